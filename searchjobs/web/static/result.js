// The result page while a job runs: live progress over Server-Sent Events, polling every 2 s when
// EventSource is missing or the server turns the stream away (503 when it has too many streams).
// When the job finishes the page reloads, and the server renders the results (or the error).
"use strict";

(function () {
  const main = document.getElementById("main");
  const token = main.dataset.token;
  const stageWords = JSON.parse(main.dataset.stageWords);
  const statusWords = JSON.parse(main.dataset.statusWords);
  const FINAL = ["completed", "failed", "cancelled"];
  const POLL_MS = 2000;
  const bar = document.getElementById("progress");
  const stageText = document.getElementById("stage-text");
  const number = document.getElementById("progress-number");
  const heading = document.getElementById("status-heading");
  const live = document.getElementById("live-status");
  let finished = false;
  let lastStage = null;

  function describe(stage) {
    const parts = (stage || "queued").split(":");
    const words = stageWords[parts[0]] || "Working";
    return parts.length > 1 ? words + " " + parts.slice(1).join(":") : words;
  }

  function show(state) {
    if (finished) return;
    const progress = Math.max(Number(bar.value) || 0, Number(state.progress) || 0); // never backwards
    const words = describe(state.stage);
    bar.value = progress;
    bar.textContent = progress + "%";
    bar.setAttribute("aria-valuetext", progress + "% — " + words);
    number.textContent = String(progress);
    stageText.textContent = words;
    if (statusWords[state.status]) heading.textContent = statusWords[state.status];
    if (state.stage !== lastStage) {
      live.textContent = words; // announced once per stage, not per event
      lastStage = state.stage;
    }
    if (FINAL.includes(state.status)) {
      finished = true;
      window.location.reload(); // the server renders the finished page
    }
  }

  function poll() {
    if (finished) return;
    fetch("/api/results/" + encodeURIComponent(token), { headers: { Accept: "application/json" } })
      .then((response) => {
        if (response.status === 404) {
          finished = true;
          window.location.reload();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then((state) => { if (state) show(state); })
      .catch(() => {}) // offline for a moment: the next poll tries again
      .finally(() => { if (!finished) window.setTimeout(poll, POLL_MS); });
  }

  if (!("EventSource" in window)) {
    poll();
    return;
  }
  const source = new EventSource("/api/results/" + encodeURIComponent(token) + "/events");
  const onEvent = (event) => {
    const state = JSON.parse(event.data);
    if (FINAL.includes(state.status)) source.close();
    show(state);
  };
  for (const name of ["progress", "completed", "failed", "cancelled"]) source.addEventListener(name, onEvent);
  source.addEventListener("error", () => {
    // CONNECTING: the browser reconnects by itself with Last-Event-ID. CLOSED: turned away, so poll.
    if (source.readyState === EventSource.CLOSED && !finished) poll();
  });
})();
