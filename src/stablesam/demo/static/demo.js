// Stable-SAM demo page: draw prompts on canvases, show SAM and Stable-SAM side by side.
// No dependencies; talks to the JSON API in stablesam/demo/app.py.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const TINT = { sam: [255, 140, 0], stable: [30, 144, 255] };
  const HEAT_LOW = [255, 235, 90], HEAT_HIGH = [240, 60, 40], HEAT_ALL = [40, 80, 230];
  const CANVASES = ["prompt-canvas", "sam-canvas", "stable-canvas", "sam-wobble-canvas", "stable-wobble-canvas"];
  const state = {
    config: null, image: null, img: null, box: null, points: [], history: [],
    result: null, wobble: null, worst: null, seq: 0, wobbleSeq: 0, drag: null,
  };

  // ------------------------------------------------------------------ server
  function message(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = kind || "";
  }

  async function api(path, options) {
    let response, body = null;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error(`the server does not answer (${e.message})`);
    }
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) throw new Error((body && body.error) || `HTTP ${response.status}`);
    return body;
  }

  const postJson = (path, obj) => api(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(obj),
  });

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      const im = new Image();
      im.onload = () => resolve(im);
      im.onerror = () => reject(new Error("the browser could not show the image"));
      im.src = src;
    });
  }

  const sizeText = (n) => (n < 1e3 ? `${n} bytes` : n < 1e6 ? `${(n / 1e3).toFixed(1)} kB` : `${(n / 1e6).toFixed(1)} MB`);
  // A size and its limit for one message (as the server's `sizes`): exact bytes where rounding makes them equal.
  function sizes(size, limit) {
    const [a, b] = [sizeText(size), sizeText(limit)];
    return a === b ? [`${size.toLocaleString("en")} bytes`, `${limit.toLocaleString("en")} bytes`] : [a, b];
  }

  // ------------------------------------------------------------------ images
  async function useImage(request, name) {
    message(`Loading ${name} (the image encoder runs once per image)`, "busy");
    let info, img;
    try {
      info = await request();
      img = await loadImage(info.url);
    } catch (e) {
      message(`${name}: ${e.message}`, "error");
      return;
    }
    state.image = info;
    state.img = img;
    state.box = null; state.points = []; state.history = [];
    state.result = null; state.wobble = null; state.worst = null; state.seq++; state.wobbleSeq++;
    $("image-stats").textContent = `${info.name} · ${info.width}×${info.height} px · ` +
      (info.stored ? "embedding reused" : `image encoded in ${info.encoder_ms.toFixed(0)} ms (once)`);
    message("Drag a box on the image (a sloppy one is fine) or click on the object.");
    update();
  }

  function uploadFile(file) {
    const c = state.config;
    if (c && file.size > c.max_bytes) {
      const [size, limit] = sizes(file.size, c.max_bytes);
      message(`${file.name}: the file is ${size}; the limit is ${limit}`, "error");
      return;
    }
    useImage(() => api("/api/images", {
      method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    }), file.name);
  }

  // ------------------------------------------------------------------ prompts
  const hasPrompt = () => state.box !== null || state.points.length > 0;
  const promptBody = () => ({ image_id: state.image.image_id, box: state.box, points: state.points });

  function changePrompt(change) {
    state.history.push({ box: state.box, points: state.points.slice() });
    change();
    promptChanged();
  }

  function promptChanged() {
    state.wobble = null; state.worst = null;
    state.wobbleSeq++;
    if (!hasPrompt()) {
      state.seq++;
      state.result = null;
      message("Drag a box on the image or click on the object.");
    }
    update();
    if (hasPrompt()) predict();
  }

  async function predict() {
    const seq = ++state.seq;
    message("Decoding with SAM and Stable-SAM", "busy");
    try {
      const r = await postJson("/api/predict", { ...promptBody(), multimask: $("multimask").checked });
      if (seq !== state.seq) return;
      [r.sam.img, r.stable_sam.img] = await Promise.all([loadImage(r.sam.mask), loadImage(r.stable_sam.mask)]);
      if (seq !== state.seq) return;
      state.result = r;
      message(`Both masks decoded in ${r.decoder_ms.toFixed(0)} ms (request ${r.ms.toFixed(0)} ms). ` +
        "Drag a new box, add clicks, or press Wobble.");
    } catch (e) {
      if (seq !== state.seq) return;
      state.result = null;
      message(e.message, "error");
    }
    update();
  }

  async function wobble() {
    if (!state.image || !hasPrompt()) return;
    const seq = state.seq, wseq = ++state.wobbleSeq;
    const k = parseInt($("wobble-k").value, 10), scale = parseFloat($("wobble-scale").value);
    const seed = parseInt($("wobble-seed").value, 10);
    message(`Wobble: ${k} noisy prompts through both models`, "busy");
    try {
      const r = await postJson("/api/wobble", {
        ...promptBody(), k: Number.isFinite(k) ? k : null, scale: Number.isFinite(scale) ? scale : null,
        seed: Number.isFinite(seed) ? seed : null,
      });
      if (seq !== state.seq || wseq !== state.wobbleSeq) return;
      [r.sam.img, r.stable_sam.img] = await Promise.all([loadImage(r.sam.heat), loadImage(r.stable_sam.heat)]);
      if (seq !== state.seq || wseq !== state.wobbleSeq) return;
      state.wobble = r; state.worst = null;
      message(`Wobble: ${r.k} noisy prompts (noise ${r.scale}, seed ${r.seed}) per model, decoded in ` +
        `${r.decoder_ms.toFixed(0)} ms.`);
    } catch (e) {
      if (wseq !== state.wobbleSeq) return;
      message(e.message, "error");
    }
    update();
  }

  async function worstBox() {
    if (!state.image || !state.box || state.points.length) return;
    const seq = state.seq, wseq = ++state.wobbleSeq;
    const scale = parseFloat($("wobble-scale").value), seed = parseInt($("wobble-seed").value, 10);
    message("Worst box: searching near your box, for each model", "busy");
    try {
      const r = await postJson("/api/worst-box", {
        ...promptBody(), scale: Number.isFinite(scale) ? scale : null, seed: Number.isFinite(seed) ? seed : null,
      });
      if (seq !== state.seq || wseq !== state.wobbleSeq) return;
      [r.sam.img, r.stable_sam.img] = await Promise.all([loadImage(r.sam.mask), loadImage(r.stable_sam.mask)]);
      if (seq !== state.seq || wseq !== state.wobbleSeq) return;
      state.worst = r; state.wobble = null;
      message(`Worst box: ${r.sam.passes} + ${r.stable_sam.passes} decoder passes (noise ${r.scale}, seed ${r.seed}) ` +
        `in ${r.ms.toFixed(0)} ms.`);
    } catch (e) {
      if (wseq !== state.wobbleSeq) return;
      message(e.message, "error");
    }
    update();
  }

  // ------------------------------------------------------------------ drawing
  function fit() {
    for (const id of CANVASES) {
      const canvas = $(id);
      if (!state.image) {
        canvas.width = canvas.height = 0;
        canvas.style.width = "100%";
        canvas.style.height = "160px";
        continue;
      }
      const { width: W, height: H } = state.image;
      const style = getComputedStyle(canvas.parentElement);
      const room = canvas.parentElement.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      let w = room, h = (room * H) / W;
      const maxH = Math.max(200, window.innerHeight * 0.55);
      if (h > maxH) { h = maxH; w = (h * W) / H; }
      const dpr = window.devicePixelRatio || 1;
      const pw = Math.max(1, Math.round(w * dpr)), ph = Math.max(1, Math.round(h * dpr));
      if (canvas.width !== pw || canvas.height !== ph) { canvas.width = pw; canvas.height = ph; }
      canvas.style.width = `${w}px`;
      canvas.style.height = `${h}px`;
    }
  }

  // A grayscale PNG (mask 0/255 or agreement heat 0..255) as a coloured layer of size w x h, cached.
  function layer(owner, img, w, h, kind) {
    const key = `${kind}:${w}x${h}`;
    if (owner.layer && owner.layer.key === key) return owner.layer.canvas;
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = kind !== "heat";  // heat levels must stay exact
    ctx.drawImage(img, 0, 0, w, h);
    const src = ctx.getImageData(0, 0, w, h).data;
    const out = ctx.createImageData(w, h);
    const d = out.data;
    if (kind === "heat") {
      for (let i = 0; i < w * h; i++) {
        const v = src[4 * i];
        if (v === 0) continue;
        const t = v / 255, c = v === 255 ? HEAT_ALL : HEAT_LOW.map((lo, j) => lo + (HEAT_HIGH[j] - lo) * t);
        d[4 * i] = c[0]; d[4 * i + 1] = c[1]; d[4 * i + 2] = c[2]; d[4 * i + 3] = 170;
      }
    } else {
      const tint = TINT[kind];
      const inside = (x, y) => x >= 0 && y >= 0 && x < w && y < h && src[4 * (y * w + x)] >= 128;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          if (!inside(x, y)) continue;
          const i = 4 * (y * w + x);
          const edge = !inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) || !inside(x, y + 1);
          d[i] = tint[0]; d[i + 1] = tint[1]; d[i + 2] = tint[2]; d[i + 3] = edge ? 255 : 130;
        }
      }
    }
    ctx.putImageData(out, 0, 0);
    owner.layer = { key, canvas };
    return canvas;
  }

  function base(canvas, dim) {
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(state.img, 0, 0, canvas.width, canvas.height);
    if (dim) { ctx.fillStyle = `rgba(0,0,0,${dim})`; ctx.fillRect(0, 0, canvas.width, canvas.height); }
    return ctx;
  }

  function toImageSpace(ctx, canvas) {
    const s = canvas.width / state.image.width;
    ctx.setTransform(s, 0, 0, s, 0, 0);
    return canvas.width / parseFloat(canvas.style.width) / s;  // image px per screen px
  }

  function drawBox(ctx, box, px, color, width, dash) {
    ctx.setLineDash(dash ? [5 * px, 4 * px] : []);
    ctx.lineWidth = (width + 2) * px; ctx.strokeStyle = "rgba(0,0,0,0.6)";
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.lineWidth = width * px; ctx.strokeStyle = color;
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.setLineDash([]);
  }

  function drawPoint(ctx, p, px, r) {
    ctx.beginPath();
    ctx.arc(p[0], p[1], r * px, 0, 2 * Math.PI);
    ctx.fillStyle = p[2] ? "rgb(0,200,0)" : "rgb(230,0,0)";
    ctx.fill();
    ctx.lineWidth = 1.5 * px; ctx.strokeStyle = "#fff";
    ctx.stroke();
  }

  function drawPrompt(ctx, px) {
    if (state.box) drawBox(ctx, state.box, px, "rgb(0,230,0)", 2, false);
    for (const p of state.points) drawPoint(ctx, p, px, 5);
    const drag = state.drag;
    if (drag && drag.moved && drag.now) {
      const [a, b] = [drag.start, drag.now];
      drawBox(ctx, [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])],
        px, "#fff", 1.5, true);
    }
  }

  function drawArrows(ctx, px, offsets) {
    for (const [x, y, dx, dy] of offsets.arrows) {
      const len = Math.hypot(dx, dy);
      for (const [color, width] of [["rgba(0,0,0,0.7)", 3], ["rgb(255,225,0)", 1.4]]) {
        ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = width * px;
        if (len < 0.8 * px) {
          ctx.beginPath(); ctx.arc(x, y, (width / 2 + 0.5) * px, 0, 2 * Math.PI); ctx.fill();
          continue;
        }
        const head = Math.min(5 * px, len * 0.45), ux = dx / len, uy = dy / len;
        ctx.beginPath();
        ctx.moveTo(x, y); ctx.lineTo(x + dx, y + dy);
        ctx.moveTo(x + dx - head * (ux - 0.6 * uy), y + dy - head * (uy + 0.6 * ux));
        ctx.lineTo(x + dx, y + dy);
        ctx.lineTo(x + dx - head * (ux + 0.6 * uy), y + dy - head * (uy - 0.6 * ux));
        ctx.stroke();
      }
    }
  }

  function render() {
    fit();
    if (!state.image) return;
    const r = state.result, wb = state.wobble, wo = state.worst;
    // prompt
    let canvas = $("prompt-canvas"), ctx = base(canvas, 0), px = toImageSpace(ctx, canvas);
    drawPrompt(ctx, px);
    // the two models
    for (const [id, key, kind] of [["sam-canvas", "sam", "sam"], ["stable-canvas", "stable_sam", "stable"]]) {
      canvas = $(id);
      ctx = base(canvas, 0);
      canvas.dataset.mask = r ? "1" : "";
      if (r) ctx.drawImage(layer(r[key], r[key].img, canvas.width, canvas.height, kind), 0, 0);
      px = toImageSpace(ctx, canvas);
      if (r && key === "stable_sam" && $("show-offsets").checked) drawArrows(ctx, px, r.stable_sam.offsets);
      drawPrompt(ctx, px);
    }
    // wobble heat maps, or each model's worst box and its mask
    for (const [id, key, kind] of [["sam-wobble-canvas", "sam", "sam"], ["stable-wobble-canvas", "stable_sam", "stable"]]) {
      canvas = $(id);
      ctx = base(canvas, wb || wo ? 0.25 : 0.45);
      canvas.dataset.heat = wb ? "1" : "";
      canvas.dataset.worst = wo ? "1" : "";
      if (wo) {
        ctx.drawImage(layer(wo[key], wo[key].img, canvas.width, canvas.height, kind), 0, 0);
        px = toImageSpace(ctx, canvas);
        if (state.box) drawBox(ctx, state.box, px, "#fff", 1.5, true);
        drawBox(ctx, wo[key].box, px, "rgb(230,30,30)", 2, false);
        continue;
      }
      if (!wb) continue;
      ctx.drawImage(layer(wb[key], wb[key].img, canvas.width, canvas.height, "heat"), 0, 0);
      px = toImageSpace(ctx, canvas);
      ctx.globalAlpha = 0.55;
      for (const b of wb.prompts.boxes || []) drawBox(ctx, b, px, "#fff", 1, false);
      for (const set of wb.prompts.points || []) for (const p of set) drawPoint(ctx, p, px, 2.5);
      ctx.globalAlpha = 1;
    }
  }

  function stats() {
    const r = state.result, wb = state.wobble, wo = state.worst;
    for (const [key, id, model] of [["sam", "sam", "sam"], ["stable_sam", "stable", "stable-sam"]]) {
      const a = $(`${id}-download`);
      if (r) {
        const choice = $("multimask").checked ? ` (mask ${r[key].choice + 1} of 3)` : "";
        $(`${id}-iou`).textContent = `predicted IoU ${r[key].iou.toFixed(3)}${choice}`;
        a.href = r[key].mask;
        a.download = `${state.image.name.replace(/\.[^.]*$/, "") || "image"}_${model}_mask.png`;
        a.setAttribute("aria-disabled", "false");
      } else {
        $(`${id}-iou`).textContent = "";
        a.removeAttribute("href");
        a.setAttribute("aria-disabled", "true");
      }
      const st = $(`${id}-stability`);
      st.innerHTML = "";
      if (wb) {
        const big = document.createElement("span");
        big.className = "big";
        big.textContent = `stability ${wb[key].stability.toFixed(3)}`;
        const small = document.createElement("span");
        small.className = "muted";
        small.textContent = `mean predicted IoU ${wb[key].mean_iou.toFixed(3)}`;
        st.append(big, small);
      } else if (wo) {
        const other = key === "sam" ? "Stable-SAM" : "SAM";
        const big = document.createElement("span");
        big.className = "big";
        big.textContent = `worst box: IoU ${wo[key].iou.toFixed(3)}`;
        const small = document.createElement("span");
        small.className = "muted";
        small.textContent = `with ${other}'s mask on your box (${wo[key].iou_drawn.toFixed(3)} on your box)`;
        st.append(big, small);
      }
    }
    const alpha = $("alpha");
    alpha.innerHTML = "";
    $("offset-stats").textContent = "";
    if (r) {
      const [a1, a2] = r.stable_sam.alpha;
      const text = document.createElement("span");
      text.textContent = `α = ${a1.toFixed(3)} deformed · ${a2.toFixed(3)} regular`;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.title = "share of the deformed features";
      const fill = document.createElement("i");
      fill.style.width = `${(100 * a1).toFixed(1)}%`;
      bar.append(fill);
      alpha.append(text, bar);
      const o = r.stable_sam.offsets;
      $("offset-stats").textContent = `mean |Δp| ${o.mean_cells.toFixed(2)} cells (1 cell = ${o.cell_px} px)` +
        ($("show-offsets").checked ? `; arrows every ${o.stride === 1 ? "" : o.stride + " "}cell${o.stride === 1 ? "" : "s"}` : "");
    }
    $("wobble").disabled = !(state.image && hasPrompt());
    $("worst-box").disabled = !(state.image && state.box && !state.points.length);
    $("undo").disabled = !state.history.length;
    $("clear").disabled = !hasPrompt();
    $("wobble-stats").textContent = wb ? `K = ${wb.k}, noise ${wb.scale}, seed ${wb.seed}; faint lines: the K prompts` : "";
  }

  function update() { render(); stats(); }

  // ------------------------------------------------------------------ input
  function imagePoint(canvas, ev) {
    const rect = canvas.getBoundingClientRect();
    const { width: W, height: H } = state.image;
    const clamp = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi) * 10) / 10;
    return [clamp(((ev.clientX - rect.left) * W) / rect.width, W - 1), clamp(((ev.clientY - rect.top) * H) / rect.height, H - 1)];
  }

  for (const id of ["prompt-canvas", "sam-canvas", "stable-canvas"]) {
    const canvas = $(id);
    canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
    canvas.addEventListener("pointerdown", (ev) => {
      if (!state.image) return;
      ev.preventDefault();
      canvas.setPointerCapture(ev.pointerId);
      state.drag = { canvas, start: imagePoint(canvas, ev), now: null, x: ev.clientX, y: ev.clientY,
        moved: false, negative: ev.button === 2 || ev.shiftKey };
    });
    canvas.addEventListener("pointermove", (ev) => {
      const drag = state.drag;
      if (!drag || drag.canvas !== canvas) return;
      drag.moved = drag.moved || Math.hypot(ev.clientX - drag.x, ev.clientY - drag.y) > 4;
      drag.now = imagePoint(canvas, ev);
      if (drag.moved) render();
    });
    canvas.addEventListener("pointerup", (ev) => {
      const drag = state.drag;
      if (!drag || drag.canvas !== canvas) return;
      state.drag = null;
      const [a, b] = [drag.start, imagePoint(canvas, ev)];
      if (drag.moved) {
        const box = [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
        if (box[2] - box[0] >= 1 && box[3] - box[1] >= 1) changePrompt(() => { state.box = box; });
        else render();
      } else if (state.points.length >= state.config.max_points) {
        message(`at most ${state.config.max_points} clicks`, "error");
      } else {
        const label = drag.negative ? 0 : parseInt(document.querySelector("input[name=label]:checked").value, 10);
        changePrompt(() => { state.points.push([a[0], a[1], label]); });
      }
    });
    canvas.addEventListener("pointercancel", () => { state.drag = null; render(); });
  }

  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    $("file").value = "";
    if (file) uploadFile(file);
  });
  $("undo").addEventListener("click", () => {
    const last = state.history.pop();
    if (!last) return;
    state.box = last.box; state.points = last.points;
    promptChanged();
  });
  $("clear").addEventListener("click", () => changePrompt(() => { state.box = null; state.points = []; }));
  $("multimask").addEventListener("change", () => { if (state.image && hasPrompt()) predict(); });
  $("show-offsets").addEventListener("change", update);
  $("wobble").addEventListener("click", wobble);
  $("worst-box").addEventListener("click", worstBox);
  window.addEventListener("resize", render);

  async function init() {
    update();
    try {
      state.config = await api("/api/config");
    } catch (e) {
      message(e.message, "error");
      return;
    }
    const c = state.config;
    $("model-info").textContent = `model ${c.model || "(unnamed)"} on ${c.device} · image embedding ` +
      `${c.grid[0]}×${c.grid[1]} · uploads up to ${sizeText(c.max_bytes)} and ${(c.max_pixels / 1e6).toFixed(1)} MP`;
    $("wobble-k").value = c.wobble.k;
    $("wobble-k").max = c.max_wobble;
    $("wobble-scale").value = c.wobble.scale;
    for (const name of c.examples) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "button example";
      b.dataset.example = name;
      const thumb = document.createElement("img");
      thumb.src = `/api/examples/${encodeURIComponent(name)}`;
      thumb.alt = "";
      b.append(thumb, document.createTextNode(name.replace(/\.[^.]+$/, "")));
      b.addEventListener("click", () =>
        useImage(() => api(`/api/examples/${encodeURIComponent(name)}`, { method: "POST" }), name));
      $("examples").append(b);
    }
  }

  init();
})();
