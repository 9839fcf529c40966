// Kiosk: a full-screen slideshow of finished runs (image and prompt), playing the mp4 where there
// is one, picking up new runs as they finish: a run not seen before is shown next.
(function () {
  "use strict";
  var root = document.getElementById("kiosk");
  var stage = document.getElementById("stage");
  var caption = document.getElementById("caption");
  var intervalMs = Math.max(1, +root.dataset.intervalS || 12) * 1000;
  var playVideo = root.dataset.playVideo === "1";
  var slides = [], seen = {}, pending = [], position = -1, timer = null, started = false;

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

  function show(slide) {
    stage.innerHTML = "";
    root.dataset.runId = slide.run_id;
    caption.textContent = slide.prompt || "";
    if (playVideo && slide.video_url) {
      var video = document.createElement("video");
      video.src = slide.video_url; video.muted = true; video.autoplay = true; video.playsInline = true;
      video.poster = slide.image_url;
      video.addEventListener("ended", function () { schedule(Math.min(intervalMs, 3000)); });
      video.addEventListener("error", function () { showImage(slide); schedule(intervalMs); });
      stage.appendChild(video);
      schedule(Math.max(intervalMs, 60000));  // in case the video stalls
    } else {
      showImage(slide);
      schedule(intervalMs);
    }
  }

  function showImage(slide) {
    stage.innerHTML = "";
    var img = document.createElement("img");
    img.src = slide.image_url; img.alt = "";
    stage.appendChild(img);
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
      show(slide);
    });
  }

  document.addEventListener("click", function () {
    if (document.documentElement.requestFullscreen) document.documentElement.requestFullscreen().catch(function () {});
  });
  advance();
})();
