#!/usr/bin/env bash
# Fetch VQGAN config + checkpoint pairs into assets/ by name, with progress and resume.
#   bash download-weights.sh                   the default pair (vqgan_imagenet_f16_16384)
#   bash download-weights.sh imagenet_16384    a pair by name or alias (several names allowed)
#   bash download-weights.sh --list            what it offers
#   bash download-weights.sh --clip ViT-B-32:openai   pre-fetch CLIP weights into the usual cache
#   bash download-weights.sh --sd [HUB_ID]     pre-fetch a Stable Diffusion model into the usual cache
# CLIP and Stable Diffusion weights otherwise download on first use into ~/.cache/huggingface.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dest="${ATELIER_ASSETS:-$here/assets}"
default_pair="vqgan_imagenet_f16_16384"
heibox="https://heibox.uni-heidelberg.de/d"

# name|aliases|config url|checkpoint url
catalogue="
vqgan_imagenet_f16_1024|imagenet_1024|$heibox/8088892a516d4e3baf92/files/?p=%2Fconfigs%2Fmodel.yaml&dl=1|$heibox/8088892a516d4e3baf92/files/?p=%2Fckpts%2Flast.ckpt&dl=1
vqgan_imagenet_f16_16384|imagenet_16384|$heibox/a7530b09fed84f80a887/files/?p=%2Fconfigs%2Fmodel.yaml&dl=1|$heibox/a7530b09fed84f80a887/files/?p=%2Fckpts%2Flast.ckpt&dl=1
coco|coco_f16|https://dl.nmkd.de/ai/clip/coco/coco.yaml|https://dl.nmkd.de/ai/clip/coco/coco.ckpt
wikiart_16384|wikiart|http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.yaml|http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.ckpt
sflckr|sflickr|$heibox/73487ab6e5314cb5adba/files/?p=%2Fconfigs%2F2020-11-09T13-31-51-project.yaml&dl=1|$heibox/73487ab6e5314cb5adba/files/?p=%2Fcheckpoints%2Flast.ckpt&dl=1
"

say() { printf '%s\n' "$*" >&2; }

list_pairs() {
  echo "VQGAN pairs (saved as assets/<name>.yaml + assets/<name>.ckpt):"
  while IFS='|' read -r name aliases _ _; do
    [ -n "$name" ] || continue
    state="missing"
    [ -f "$dest/$name.yaml" ] && [ -f "$dest/$name.ckpt" ] && state="installed"
    mark=""; [ "$name" = "$default_pair" ] && mark=" (default)"
    printf '  %-26s alias %-16s %s%s\n' "$name" "$aliases" "$state" "$mark"
  done <<< "$catalogue"
  echo "Also: --clip MODEL:TAG (e.g. ViT-B-32:openai) and --sd [HUB_ID] pre-fetch into the usual caches."
}

lookup() {  # prints the catalogue line for a name or alias
  local wanted="$1"
  while IFS='|' read -r name aliases config ckpt; do
    [ -n "$name" ] || continue
    if [ "$wanted" = "$name" ] || [ "$wanted" = "$aliases" ]; then
      printf '%s|%s|%s\n' "$name" "$config" "$ckpt"; return 0
    fi
  done <<< "$catalogue"
  return 1
}

fetch() {  # url target: resumable download into target.part, moved into place only when complete
  local url="$1" target="$2"
  if [ -s "$target" ]; then
    say "  $(basename "$target"): already complete, skipped"
    return 0
  fi
  say "  $(basename "$target"): downloading"
  if ! curl -fL --retry 3 --retry-delay 2 -C - --progress-bar -o "$target.part" "$url"; then
    say "error: could not download $(basename "$target") from $url: check your connection and run the same command again to resume."
    return 1
  fi
  mv "$target.part" "$target"
}

fetch_pair() {
  local line name config ckpt
  if ! line="$(lookup "$1")"; then
    say "error: unknown model '$1': run 'bash download-weights.sh --list' to see the names."
    return 2
  fi
  IFS='|' read -r name config ckpt <<< "$line"
  mkdir -p "$dest"
  say "$name -> $dest"
  fetch "$config" "$dest/$name.yaml" && fetch "$ckpt" "$dest/$name.ckpt"
}

prefetch_python() {  # what: python code run with the name as argv[1]
  local label="$1" code="$2" arg="$3"
  say "Fetching $label $arg into the usual cache…"
  if ! python3 -c "$code" "$arg"; then
    say "error: could not fetch $label $arg: check the name and your connection."
    return 1
  fi
}

main() {
  command -v curl >/dev/null || { say "error: curl is not installed: install it (e.g. apt-get install curl) and retry."; exit 1; }
  [ $# -gt 0 ] || set -- "$default_pair"
  local status=0
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
      --list) list_pairs ;;
      --clip)
        prefetch_python CLIP 'import sys, open_clip; m, _, t = sys.argv[1].partition(":"); open_clip.create_model(m, pretrained=t or "openai")' "${2:-ViT-B-32:openai}" || status=1
        shift ;;
      --sd)
        local repo="stable-diffusion-v1-5/stable-diffusion-v1-5"
        if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then repo="$2"; shift; fi
        prefetch_python "Stable Diffusion" 'import sys; from diffusers import DiffusionPipeline; DiffusionPipeline.download(sys.argv[1])' "$repo" || status=1 ;;
      *) fetch_pair "$1" || status=$? ;;
    esac
    shift
  done
  exit "$status"
}

main "$@"
