// Kiosk: a full-screen slideshow of finished runs (final image and prompt; a walk plays its video),
// picking up new runs as they finish: a run not seen before is shown next. Two stacked layers: the
// next slide is loaded into the hidden layer and shown only once it can be drawn, then the layers
// crossfade (CSS opacity transition), so there is never a blank frame between slides.
(function () {
  "use strict";
  var root = document.getElementById("kiosk");
  var caption = document.getElementById("caption");
  var waiting = root.querySelector(".waiting");
  var layers = [document.getElementById("layer-a"), document.getElementById("layer-b")];
  var front = 1;  // index of the visible layer; the first slide goes to layer 0
  var intervalMs = Math.max(1, +root.dataset.intervalS || 12) * 1000;
  var playVideo = root.dataset.playVideo === "1";
  var slides = [], seen = {}, pending = [], position = -1, timer = null, started = false, token = 0;

  function load() {
    return fetch(root.dataset.slidesUrl, {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var first = slides.length === 0 && !started;
        data.slides.slice().reverse().forEach(function (s) {
          if (seen[s.folder]) return;  // folder names are unique; run ids may repeat
          seen[s.folder] = true;
          if (!first) pending.unshift(s);  // newest first among the new ones
        });
        slides = data.slides;
      })
      .catch(function () {});
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(advance, ms);
  }

  function media(slide, onReady, onFail) {
    var el;
    if (playVideo && slide.video_url) {
      el = document.createElement("video");
      el.muted = true; el.playsInline = true; el.loop = false; el.preload = "auto";
      el.poster = slide.image_url;
      el.addEventListener("loadeddata", function () { onReady(el, true); }, {once: true});
      el.addEventListener("error", onFail, {once: true});
      el.src = slide.video_url;
    } else {
      el = document.createElement("img");
      el.alt = "";
      el.addEventListener("load", function () { onReady(el, false); }, {once: true});
      el.addEventListener("error", onFail, {once: true});
      el.src = slide.image_url;
    }
    return el;
  }

  function show(slide, imageOnly) {
    var mine = ++token;
    var back = layers[1 - front];
    var shown = imageOnly ? Object.assign({}, slide, {video_url: null}) : slide;
    var el = media(shown, function (ready, isVideo) {
      if (mine !== token) return;  // a later slide was asked for meanwhile
      crossfade(back, ready, slide);
      if (isVideo) {
        ready.play().catch(function () {});
        ready.addEventListener("ended", function () { schedule(Math.min(intervalMs, 3000)); });
        schedule(Math.max(intervalMs, 60000));  // in case the video stalls
      } else {
        schedule(intervalMs);
      }
    }, function () {
      if (mine !== token) return;
      if (shown.video_url) { show(slide, true); return; }  // no video: its image
      schedule(1000);  // unreadable image: next slide soon
    });
    back.replaceChildren(el);
  }

  function crossfade(back, el, slide) {
    var old = layers[front];
    front = 1 - front;
    back.classList.add("visible");
    old.classList.remove("visible");
    if (waiting) { waiting.remove(); waiting = null; }
    root.dataset.runId = slide.run_id;
    caption.textContent = slide.prompt || "";
    caption.hidden = !slide.prompt;
    // Stop the old layer's video once it has faded out, so two never play at once.
    setTimeout(function () {
      if (!old.classList.contains("visible")) {
        var v = old.querySelector("video");
        if (v) v.pause();
      }
    }, 1500);
  }

  function advance() {
    load().then(function () {
      var slide = pending.shift();
      if (!slide && slides.length) {
        position = (position + 1) % slides.length;
        slide = slides[position];
      }
      if (!slide) { schedule(Math.min(intervalMs, 5000)); return; }
      started = true;
      show(slide, false);
    });
  }

  document.addEventListener("click", function () {
    if (document.documentElement.requestFullscreen) document.documentElement.requestFullscreen().catch(function () {});
  });
  advance();
})();
