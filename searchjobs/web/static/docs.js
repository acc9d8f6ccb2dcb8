// /docs: start Swagger UI (swagger-ui-bundle.js, loaded just before) on this app's /openapi.json.
// Kept in a file, not inline, so the page runs under the site's script-src 'self'.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,              // #/jobs/submitJob links to an operation
    docExpansion: "list",
    defaultModelsExpandDepth: 0,    // the schemas stay folded below the operations
    displayOperationId: true,
    tryItOutEnabled: false,
    validatorUrl: null,             // never send the document to a third-party validator
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"            // no top bar: the site header is ours
  });
})();
