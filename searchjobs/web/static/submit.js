// The submit page: check the form here first, send it to the JSON API, then go to the job's result link.
// Errors from the API ({error: {code, message, field}}) are shown next to the field they name.
"use strict";

(function () {
  const form = document.getElementById("search-form");
  if (!form) return;
  const maxCategories = Number(form.dataset.maxCategories);
  const maxBytes = Number(form.dataset.maxBytes);
  const imageTypes = form.dataset.imageTypes.split(",");
  const camera = document.getElementById("camera");
  const photo = document.getElementById("photo");
  const preview = document.getElementById("photo-preview");
  const photoName = document.getElementById("photo-name");
  const submitButton = document.getElementById("submit");
  const submitStatus = document.getElementById("submit-status");
  const formError = document.getElementById("form-error");
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

  function clearErrors() {
    formError.hidden = true;
    formError.textContent = "";
    for (const field of Object.values(FIELDS)) {
      const box = document.getElementById(field.error);
      box.hidden = true;
      box.textContent = "";
    }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function choose(input) {
    const file = input.files && input.files[0];
    if (!file) return;
    chosen = file;
    photoName.textContent = "Photo: " + file.name;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    const box = document.getElementById("image-error");
    box.hidden = true;
  }
  camera.addEventListener("change", () => choose(camera));
  photo.addEventListener("change", () => choose(photo));

  // Checks the API would make anyway, answered without a round trip. Returns [field, message] pairs.
  function check() {
    const problems = [];
    if (!chosen) {
      problems.push(["image", "Take or choose a photo first."]);
    } else if (chosen.type && !imageTypes.includes(chosen.type)) {
      problems.push(["image", "This file type is not supported; use a JPEG, PNG, WebP or GIF photo."]);
    } else if (chosen.size > maxBytes) {
      problems.push(["image", "This photo is too large; the limit is " + Math.round(maxBytes / 1048576) + " MB."]);
    } else if (chosen.size === 0) {
      problems.push(["image", "This file is empty."]);
    }
    const picked = form.querySelectorAll("input[name=categories]:checked");
    if (picked.length === 0) problems.push(["categories", "Pick at least one category."]);
    if (picked.length > maxCategories) problems.push(["categories", "Pick at most " + maxCategories + " categories."]);
    const phone = document.getElementById("phone_number").value.trim();
    const country = document.getElementById("country_code").value;
    if (phone) {
      const digits = phone.replace(/\D/g, "");
      if (!/^[+\d][\d\s().\-]*$/.test(phone) || digits.length < 6 || digits.length > 15) {
        problems.push(["phone_number", "Enter a mobile number using digits, for example 07700 900123."]);
      } else if (!phone.startsWith("+") && !country) {
        problems.push(["country_code", "Choose the country of this number, or start it with + and the country code."]);
      }
    }
    return problems;
  }

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
    const phone = document.getElementById("phone_number").value.trim();
    if (phone) {
      body.append("phone_number", phone);
      const country = document.getElementById("country_code").value;
      if (country) body.append("country_code", country);
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
        showError("image", "This photo is too large.");
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
