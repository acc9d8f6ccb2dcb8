// /docs: render the operations of /openapi.json as a list. Plain DOM, text only (no innerHTML).
(function () {
  "use strict";

  var METHODS = ["get", "post", "put", "patch", "delete"];

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function resolve(spec, obj) {
    // follow one local $ref ("#/components/...")
    if (!obj || !obj.$ref) { return obj; }
    return obj.$ref.slice(2).split("/").reduce(function (acc, key) { return acc && acc[key]; }, spec);
  }

  function refName(obj) {
    return obj && obj.$ref ? obj.$ref.split("/").pop() : null;
  }

  function table(headers, rows) {
    return el("table", {}, [
      el("thead", {}, [el("tr", {}, headers.map(function (h) { return el("th", {}, [h]); }))]),
      el("tbody", {}, rows.map(function (row) {
        return el("tr", {}, row.map(function (cell) {
          return el("td", {}, [typeof cell === "string" ? cell : cell]);
        }));
      }))
    ]);
  }

  function schemaText(spec, schema) {
    if (!schema) { return ""; }
    var name = refName(schema);
    if (name) { return name; }
    var type = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "");
    if (schema.enum) { return type + " (" + schema.enum.join(", ") + ")"; }
    if (schema.pattern) { return type + " matching " + schema.pattern; }
    if (schema.minimum !== undefined || schema.maximum !== undefined) {
      return type + " " + (schema.minimum !== undefined ? schema.minimum : "") + ".." +
        (schema.maximum !== undefined ? schema.maximum : "");
    }
    return type;
  }

  function renderOperation(spec, path, method, pathItem, op) {
    var body = el("div", {});
    if (op.description) { body.appendChild(el("p", {}, [op.description])); }

    var security = op.security || spec.security || [];
    var auth = security.map(function (req) { return Object.keys(req)[0] || "none"; });
    body.appendChild(el("p", {}, ["Authentication: " + (auth.length ? auth.join(" or ") : "none")]));

    var params = (pathItem.parameters || []).concat(op.parameters || []).map(function (p) {
      return resolve(spec, p);
    });
    if (params.length) {
      body.appendChild(el("h4", {}, ["Parameters"]));
      body.appendChild(table(["name", "in", "required", "schema", "description"], params.map(function (p) {
        return [el("code", {}, [p.name]), p.in, p.required ? "yes" : "no", schemaText(spec, p.schema),
                p.description || ""];
      })));
    }

    if (op.requestBody) {
      body.appendChild(el("h4", {}, ["Request body"]));
      var content = op.requestBody.content || {};
      body.appendChild(table(["content type", "schema"], Object.keys(content).map(function (type) {
        return [el("code", {}, [type]), schemaText(spec, content[type].schema)];
      })));
    }

    body.appendChild(el("h4", {}, ["Responses"]));
    body.appendChild(table(["status", "description", "content", "headers"],
      Object.keys(op.responses).map(function (status) {
        var response = resolve(spec, op.responses[status]);
        var types = Object.keys(response.content || {});
        var schemas = types.map(function (t) { return t + " " + schemaText(spec, response.content[t].schema); });
        return [el("code", {}, [status]), response.description || "", schemas.join("; "),
                Object.keys(response.headers || {}).join(", ")];
      })));

    return el("details", {class: "operation", id: op.operationId || (method + path)}, [
      el("summary", {}, [
        el("span", {class: "method " + method}, [method]),
        el("span", {class: "path"}, [path]),
        el("span", {class: "summary"}, [op.summary || ""])
      ]),
      body
    ]);
  }

  function render(spec, root) {
    root.textContent = "";
    root.appendChild(el("p", {}, [spec.info.title + " " + spec.info.version + " · OpenAPI " + spec.openapi]));
    if (spec.info.description) {
      root.appendChild(el("pre", {class: "description"}, [spec.info.description]));
    }

    var byTag = {};
    var tagOrder = (spec.tags || []).map(function (t) { return t.name; });
    Object.keys(spec.paths).sort().forEach(function (path) {
      var item = spec.paths[path];
      METHODS.forEach(function (method) {
        var op = item[method];
        if (!op) { return; }
        var tag = (op.tags && op.tags[0]) || "other";
        if (tagOrder.indexOf(tag) < 0) { tagOrder.push(tag); }
        (byTag[tag] = byTag[tag] || []).push(renderOperation(spec, path, method, item, op));
      });
    });
    tagOrder.forEach(function (tag) {
      if (!byTag[tag]) { return; }
      var info = (spec.tags || []).filter(function (t) { return t.name === tag; })[0];
      var section = el("section", {class: "tag"}, [el("h2", {}, [tag])]);
      if (info && info.description) { section.appendChild(el("p", {}, [info.description])); }
      byTag[tag].forEach(function (node) { section.appendChild(node); });
      root.appendChild(section);
    });

    var error = spec.components && spec.components.schemas && spec.components.schemas.Error;
    var codes = error && error.properties.error.properties.code;
    if (codes && codes.enum) {
      var described = codes["x-descriptions"] || {};
      var section = el("section", {class: "tag", id: "error-codes"}, [
        el("h2", {}, ["Error codes"]),
        el("p", {}, ["Every JSON error is {\"error\": {\"code\", \"message\"}}; the code is stable."])
      ]);
      section.appendChild(table(["code", "meaning"], codes.enum.map(function (code) {
        return [el("code", {}, [code]), described[code] || ""];
      })));
      root.appendChild(section);
    }
  }

  var root = document.getElementById("docs");
  fetch(root.getAttribute("data-spec"), {headers: {Accept: "application/json"}})
    .then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    })
    .then(function (spec) { render(spec, root); })
    .catch(function (err) {
      root.textContent = "";
      root.appendChild(el("p", {class: "error"}, ["Could not load the API description: " + err.message]));
    });
})();
