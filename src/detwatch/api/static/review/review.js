// The review page's script: draws the model's boxes over the image, turns the reviewer's
// keys and drags into per-box actions, and submits the label with one feedback item per
// action. Plain JavaScript, no build step; the server renders everything else.
"use strict";

(function () {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const root = document.getElementById("review");
  const canvas = document.getElementById("canvas");
  const image = document.getElementById("image");
  const status = document.getElementById("status");
  const choice = document.getElementById("class-choice");
  const newClass = document.getElementById("new-class");
  const slider = document.getElementById("threshold");
  const sliderValue = document.getElementById("threshold-value");
  const csrf = root.dataset.csrf;

  // One entry per detection: what the reviewer did to it.
  const boxes = page.detections.map((d, index) => ({
    index, cls: d.class, confidence: d.confidence, box: d.box.map(Number),
    kept: false, relabel: null, adjust: null, deleted: false, el: null,
  }));
  const missed = [];  // {cls, box, el}
  let selected = boxes.length ? 0 : -1;
  let scale = 1;
  let threshold = 0;
  let drawing = false;
  let busy = false;

  function round(v) { return Math.round(v * 100) / 100; }

  function naturalSize() {
    if (image && image.naturalWidth) return [image.naturalWidth, image.naturalHeight];
    if (page.width && page.height) return [page.width, page.height];
    let w = 1, h = 1;
    for (const b of boxes) { w = Math.max(w, b.box[2]); h = Math.max(h, b.box[3]); }
    return [w, h];
  }

  function layout() {
    const [w, h] = naturalSize();
    if (image) {
      scale = image.clientWidth / w;
    } else {
      scale = Math.min(1, 960 / w);
      canvas.style.width = `${w * scale}px`;
      canvas.style.height = `${h * scale}px`;
    }
    for (const b of boxes) place(b.el, b.adjust || b.box);
    for (const m of missed) place(m.el, m.box);
  }

  function place(el, box) {
    el.style.left = `${box[0] * scale}px`;
    el.style.top = `${box[1] * scale}px`;
    el.style.width = `${(box[2] - box[0]) * scale}px`;
    el.style.height = `${(box[3] - box[1]) * scale}px`;
  }

  function makeBox(label, extra) {
    const el = document.createElement("div");
    el.className = `box ${extra || ""}`;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = label;
    el.appendChild(tag);
    for (const corner of ["nw", "ne", "sw", "se"]) {
      const handle = document.createElement("span");
      handle.className = `handle ${corner}`;
      handle.dataset.corner = corner;
      el.appendChild(handle);
    }
    canvas.appendChild(el);
    return el;
  }

  function tagText(b) {
    const cls = b.relabel || b.cls;
    return `${cls} ${b.confidence.toFixed(2)}`;
  }

  function render() {
    boxes.forEach((b, i) => {
      const el = b.el;
      el.querySelector(".tag").textContent = tagText(b);
      el.classList.toggle("selected", i === selected);
      el.classList.toggle("kept", b.kept);
      el.classList.toggle("relabeled", b.relabel !== null);
      el.classList.toggle("adjusted", b.adjust !== null);
      el.classList.toggle("deleted", b.deleted);
      el.classList.toggle("hidden", b.confidence < threshold);
      el.dataset.action = b.deleted ? "false_positive" : b.kept ? "correct"
        : [b.relabel !== null ? "wrong_label" : "", b.adjust !== null ? "wrong_box" : ""].filter(Boolean).join(" ");
    });
  }

  function visible() { return boxes.filter((b) => b.confidence >= threshold).map((b) => b.index); }

  function select(step) {
    const shown = visible();
    if (!shown.length) { selected = -1; render(); return; }
    const at = shown.indexOf(selected);
    selected = shown[(at + step + shown.length) % shown.length];
    render();
  }

  function current() { return selected >= 0 ? boxes[selected] : null; }

  function chosenClass() { return (newClass.value || "").trim() || choice.value; }

  function keep(b) { b.kept = true; b.relabel = null; b.adjust = null; b.deleted = false; }

  function relabel(b, cls) {
    if (!cls || cls === b.cls) { choice.focus(); return; }
    b.relabel = cls; b.kept = false; b.deleted = false;
  }

  function toggleDelete(b) { b.deleted = !b.deleted; if (b.deleted) { b.kept = false; b.relabel = null; b.adjust = null; } }

  function say(text) { status.textContent = text; }

  // ---------------------------------------------------------------- dragging

  function point(event) {
    const rect = canvas.getBoundingClientRect();
    const [w, h] = naturalSize();
    const x = Math.min(Math.max((event.clientX - rect.left) / scale, 0), w);
    const y = Math.min(Math.max((event.clientY - rect.top) / scale, 0), h);
    return [x, y];
  }

  function dragCorner(b, corner, start) {
    const from = (b.adjust || b.box).slice();
    function move(event) {
      const [x, y] = point(event);
      const box = from.slice();
      if (corner.includes("w")) box[0] = Math.min(x, box[2] - 1); else box[2] = Math.max(x, box[0] + 1);
      if (corner.includes("n")) box[1] = Math.min(y, box[3] - 1); else box[3] = Math.max(y, box[1] + 1);
      b.adjust = box.map(round); b.kept = false; b.deleted = false;
      place(b.el, b.adjust);
    }
    function up() { document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up); render(); }
    document.addEventListener("mousemove", move);
    document.addEventListener("mouseup", up);
    move(start);
  }

  function drawMissed(start) {
    const [x0, y0] = point(start);
    const m = { cls: chosenClass(), box: [x0, y0, x0 + 1, y0 + 1], el: null };
    m.el = makeBox(`${m.cls} (missed)`, "missed");
    place(m.el, m.box);
    function move(event) {
      const [x, y] = point(event);
      m.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)].map(round);
      place(m.el, m.box);
    }
    function up(event) {
      move(event);
      document.removeEventListener("mousemove", move);
      document.removeEventListener("mouseup", up);
      drawing = false;
      canvas.classList.remove("drawing");
      if (m.box[2] - m.box[0] < 2 || m.box[3] - m.box[1] < 2) { m.el.remove(); say("too small: drag to draw a box"); return; }
      missed.push(m);
      say(`missed ${m.cls} drawn`);
    }
    document.addEventListener("mousemove", move);
    document.addEventListener("mouseup", up);
  }

  canvas.addEventListener("mousedown", (event) => {
    event.preventDefault();
    if (drawing) { drawMissed(event); return; }
    const handle = event.target.closest(".handle");
    const el = event.target.closest(".box");
    const b = boxes.find((x) => x.el === el);
    if (handle && b) { dragCorner(b, handle.dataset.corner, event); return; }
    if (b) { selected = b.index; render(); }
  });

  // ---------------------------------------------------------------- submitting

  function payload(action) {
    const annotations = [];
    const feedback = [];
    for (const b of boxes) {
      if (b.deleted) { feedback.push({ type: "false_positive", detection_index: b.index }); continue; }
      if (b.kept) feedback.push({ type: "correct", detection_index: b.index });
      if (b.relabel !== null) feedback.push({ type: "wrong_label", detection_index: b.index, corrected_class: b.relabel });
      if (b.adjust !== null) feedback.push({ type: "wrong_box", detection_index: b.index, corrected_box: b.adjust });
      // What the page shows is the label: boxes under the threshold are left out (not marked wrong).
      if (b.confidence >= threshold) annotations.push({ class: b.relabel || b.cls, box: b.adjust || b.box });
    }
    for (const m of missed) {
      feedback.push({ type: "missed_object", corrected_class: m.cls, corrected_box: m.box });
      annotations.push({ class: m.cls, box: m.box });
    }
    return action === "label" ? { action, annotations, feedback } : { action };
  }

  async function send(action) {
    if (busy) return;
    busy = true;
    say(`${action}…`);
    try {
      const response = await fetch(page.submit_url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(payload(action)),
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 401) { window.location.assign(`sign-in?next=${encodeURIComponent(window.location.pathname)}`); return; }
      if (!response.ok) { say(body.error ? `${body.error.field}: ${body.error.message}` : `failed (${response.status})`); busy = false; return; }
      say("saved");
      window.location.assign(body.next || page.next_url);
    } catch (error) {
      say(`not saved: ${error}`);
      busy = false;
    }
  }

  document.getElementById("submit").addEventListener("click", () => send("label"));
  document.getElementById("reject").addEventListener("click", () => send("reject"));
  document.getElementById("skip").addEventListener("click", () => send("skip"));

  // ---------------------------------------------------------------- keys

  choice.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault(); event.stopPropagation();
      const b = current();
      if (b) relabel(b, chosenClass());
      choice.blur(); render();
    }
  });

  document.addEventListener("keydown", (event) => {
    const typing = event.target === newClass || event.target === choice;
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const b = current();
    switch (event.key) {
      case "Tab": event.preventDefault(); select(event.shiftKey ? -1 : 1); return;
      case "c": if (b) keep(b); break;
      case "l": if (b) relabel(b, chosenClass()); break;
      case "d": if (b) toggleDelete(b); break;
      case "a": if (b) b.el.classList.toggle("adjusting"); break;
      case "m": drawing = true; canvas.classList.add("drawing"); say("drag on the image to draw the missed object"); break;
      case "Enter": event.preventDefault(); send("label"); return;
      case "x": send("reject"); return;
      case "s": send("skip"); return;
      default: return;
    }
    event.preventDefault();
    render();
  });

  slider.addEventListener("input", () => {
    threshold = Number(slider.value);
    sliderValue.textContent = threshold.toFixed(2);
    if (selected >= 0 && boxes[selected].confidence < threshold) select(1); else render();
  });

  // ---------------------------------------------------------------- start

  for (const b of boxes) b.el = makeBox(tagText(b));
  window.addEventListener("resize", layout);
  layout();
  render();
  if (image && !image.complete) {
    image.addEventListener("load", () => { layout(); render(); root.dataset.ready = "true"; });
  } else {
    root.dataset.ready = "true";
  }
}());
