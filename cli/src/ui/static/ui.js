// MedMesh UI: live job logs and progress over server-sent events. Our own code,
// no library and no build step; the pages work without it (reload to see more).
"use strict";

function followJob(box) {
  const url = box.getAttribute("data-events");
  if (!url || typeof EventSource === "undefined") return;
  const log = document.getElementById("log");
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  const status = document.getElementById("status");
  const source = new EventSource(url);
  let follow = true;
  log.addEventListener("scroll", () => {
    follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  });
  source.addEventListener("reset", () => { log.textContent = ""; });
  source.addEventListener("log", (e) => {
    log.append(e.data + "\n");
    if (follow) log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("progress", (e) => {
    const [done, total, ...words] = e.data.split(" ");
    bar.max = Math.max(1, Number(total));
    bar.value = Number(done);
    bar.textContent = done + " of " + total;
    text.textContent = words.join(" ");
  });
  source.addEventListener("done", (e) => {
    source.close();
    status.textContent = e.data === "done" ? "done; loading the outcome" : "failed; loading why";
    // The outcome is rendered by the server.
    window.location.reload();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("job");
  if (box) followJob(box);
  // A confirmation on buttons that sign and publish, when the page asks for one.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
    });
  }
});
