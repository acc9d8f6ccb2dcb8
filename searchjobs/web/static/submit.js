// The submit page: check the form here first, send it to the JSON API, then go to the job's result link.
// Errors from the API ({error: {code, message, field}}) are shown next to the field they name.
"use strict";

(function () {
  const form = document.getElementById("search-form");
  if (!form) return;
  const maxCategories = Number(form.dataset.maxCategories);
  const imageTypes = form.dataset.imageTypes.split(",");
  const camera = document.getElementById("camera");
  const photo = document.getElementById("photo");
  const preview = document.getElementById("photo-preview");
  const photoName = document.getElementById("photo-name");
  const submitButton = document.getElementById("submit");
  const submitStatus = document.getElementById("submit-status");
  const formError = document.getElementById("form-error");
  const country = document.getElementById("country_code");
  const phoneInput = document.getElementById("phone_number");
  const phoneExample = document.getElementById("phone-example");
  const noCountryHint = phoneExample.textContent; // the server's text for "no country chosen"
  let chosen = null; // the last photo taken or chosen

  // API field names -> the element that shows the message and the control to focus
  const FIELDS = {
    image: { error: "image-error", control: () => camera },
    image_url: { error: "image-error", control: () => camera },
    categories: { error: "categories-error", control: () => form.querySelector("input[name=categories]") },
    phone_number: { error: "phone_number-error", control: () => document.getElementById("phone_number") },
    country_code: { error: "country_code-error", control: () => document.getElementById("country_code") },
  };

  function showError(field, message) {
    const target = FIELDS[field];
    if (!target) {
      formError.textContent = message;
      formError.hidden = false;
      formError.focus();
      return;
    }
    const box = document.getElementById(target.error);
    box.textContent = message;
    box.hidden = false;
    const control = target.control();
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
  }

  // Hide one field's message (once what it said is fixed) and unmark its control.
  function clearError(field) {
    const target = FIELDS[field];
    const box = document.getElementById(target.error);
    box.hidden = true;
    box.textContent = "";
    const control = target.control();
    if (control) control.removeAttribute("aria-invalid");
  }

  function clearErrors() {
    formError.hidden = true;
    formError.textContent = "";
    for (const field of Object.keys(FIELDS)) clearError(field);
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  // "11.9 MB" (1 MB = 1048576 bytes, as the server counts)
  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(1).replace(/\.0$/, "") + " MB";
  }

  // The example number of the chosen country, or null when none is chosen.
  function exampleNumber() {
    const option = country.selectedOptions[0];
    return (option && option.dataset.example) || null;
  }

  // The hint under the number follows the country: its own example, as its people write it.
  function showExample() {
    const example = exampleNumber();
    phoneExample.textContent = example ? "For example " + example + "." : noCountryHint;
    phoneInput.placeholder = example || "";
  }

  function choose(input) {
    const file = input.files && input.files[0];
    if (!file) return;
    chosen = file;
    photoName.textContent = "Photo: " + file.name;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    clearError("image");
  }
  camera.addEventListener("change", () => choose(camera));
  photo.addEventListener("change", () => choose(photo));

  // Checks the API would make anyway, answered without a round trip. Returns [field, message] pairs.
  function check() {
    const maxBytes = Number(form.dataset.maxBytes); // read each time: the page states the limit it was served with
    const problems = [];
    if (!chosen) {
      problems.push(["image", "Take or choose a photo first."]);
    } else if (chosen.type && !imageTypes.includes(chosen.type)) {
      problems.push(["image", "This file type is not supported; use a JPEG, PNG, WebP or GIF photo."]);
    } else if (chosen.size > maxBytes) {
      problems.push(["image", "This photo is " + megabytes(chosen.size) + "; the limit is " + megabytes(maxBytes) + "."]);
    } else if (chosen.size === 0) {
      problems.push(["image", "This file is empty."]);
    }
    const categories = categoriesProblem();
    if (categories) problems.push(["categories", categories]);
    problems.push(...phoneProblems());
    return problems;
  }

  function categoriesProblem() {
    const picked = form.querySelectorAll("input[name=categories]:checked").length;
    if (picked === 0) return "Pick at least one category.";
    if (picked > maxCategories) return "Pick at most " + maxCategories + " categories.";
    return null;
  }

  function phoneProblems() {
    const phone = phoneInput.value.trim();
    if (!phone) return [];
    const digits = phone.replace(/\D/g, "");
    if (!/^[+\d][\d\s().\-]*$/.test(phone) || digits.length < 6 || digits.length > 15) {
      const example = exampleNumber();
      return [["phone_number", "Enter a mobile number using digits" + (example ? ", for example " + example : "") + "."]];
    }
    if (!phone.startsWith("+") && !country.value) {
      return [["country_code", "Choose the country of this number, or start it with + and the country code."]];
    }
    return [];
  }

  // A message goes away as soon as what it asked for is done (not only at the next submit).
  form.addEventListener("change", (event) => {
    if (event.target.name === "categories" && !categoriesProblem()) clearError("categories");
  });
  country.addEventListener("change", () => {
    showExample();
    if (country.value) clearError("country_code");
  });
  phoneInput.addEventListener("input", () => clearError("phone_number"));
  showExample(); // a country the browser kept from an earlier visit

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const problems = check();
    if (problems.length) {
      for (const [field, message] of problems.reverse()) showError(field, message); // focus lands on the first
      return;
    }
    const body = new FormData();
    body.append("image", chosen, chosen.name || "photo");
    for (const box of form.querySelectorAll("input[name=categories]:checked")) body.append("categories", box.value);
    const phone = phoneInput.value.trim();
    if (phone) {
      body.append("phone_number", phone);
      if (country.value) body.append("country_code", country.value);
    }
    submitButton.disabled = true;
    submitStatus.textContent = "Sending your photo…";
    try {
      const response = await fetch("/api/search-jobs", { method: "POST", body: body, headers: { Accept: "application/json" } });
      const data = await response.json().catch(() => null);
      if (response.status === 202 && data && data.result_url) {
        submitStatus.textContent = "Sent. Opening your search…";
        // same origin as this page, whatever PUBLIC_BASE_URL says
        window.location.assign(new URL(data.result_url, window.location.href).pathname);
        return;
      }
      const error = (data && data.error) || {};
      if (response.status === 413) {
        // our image_too_large says how large the photo is; a proxy's 413 may say nothing
        const sizes = error.size_bytes ? "This photo is " + megabytes(error.size_bytes) + "; " : "This photo is too large; ";
        const limit = error.limit_bytes || Number(form.dataset.maxBytes);
        showError("image", sizes + "the limit is " + megabytes(limit) + ".");
      } else if (response.status >= 500) {
        showError(null, "The service is busy or unavailable. Please try again in a moment.");
      } else {
        showError(error.field, error.message || "The search could not be started.");
      }
    } catch (err) {
      showError(null, "Could not reach the server. Check your connection and try again.");
    }
    submitButton.disabled = false;
    submitStatus.textContent = "";
  });
})();
