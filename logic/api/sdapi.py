"""An AUTOMATIC1111-compatible subset (/sdapi/v1), so existing clients and plugins work unchanged.

Shapes follow A1111's ``modules/api/api.py`` and ``models.py``. Requests become ``diffusion`` runs
in the shared queue and land in run folders like every other run; txt2img and img2img answer when
their run ends (as in A1111), while progress and interrupt are served meanwhile. Settings Atelier
has no equivalent for (hires fix, restore faces, scripts, …) are accepted and ignored.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException

from .. import queue, runs
from ..engines import sd_common
from ..errors import UserError
from ..settings import defaults
from . import schemas
from .security import decode_image_data
from .service import ApiService, user_error_to_400

MODE = "diffusion"
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]+\]$")   # A1111 titles: "name.safetensors [6ce0161689]"


def router(service: ApiService) -> APIRouter:
    api = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111-compatible"])

    @api.post("/txt2img", response_model=schemas.SdImageResponse)
    def txt2img(request: schemas.SdTxt2ImgRequest):
        return _generate(service, request, to_params(service, request), None)

    @api.post("/img2img", response_model=schemas.SdImageResponse)
    def img2img(request: schemas.SdImg2ImgRequest):
        if not request.init_images:
            raise HTTPException(400, "img2img needs an image in init_images (base64).")
        params = {**to_params(service, request), "strength": request.denoising_strength}
        try:
            image = decode_image_data(request.init_images[0], "init image")
        except UserError as exc:
            raise user_error_to_400(exc) from None
        return _generate(service, request, params, image)

    @api.get("/progress", response_model=schemas.SdProgressResponse)
    def progress(skip_current_image: bool = False):
        return progress_of(service, skip_current_image)

    @api.post("/interrupt")
    def interrupt():
        """Stop the run on the device now (whichever process runs it); it keeps what it made."""
        run = service.current_run()
        if run is not None:
            queue.request_stop(run)
        return {}

    @api.post("/skip")
    def skip():
        return interrupt()

    @api.get("/options")
    def get_options():
        return {"sd_model_checkpoint": current_checkpoint(service), "sd_checkpoint_hash": None,
                "samples_format": "png", **{k: v for k, v in service.options.items() if k != "sd_model_checkpoint"}}

    @api.post("/options")
    def set_options(options: dict):
        """Setting ``sd_model_checkpoint`` chooses the model of later requests; other options are kept as given."""
        if "sd_model_checkpoint" in options:
            name = checkpoint_name(str(options["sd_model_checkpoint"]))
            titles = [m.title for m in sd_models(service)]
            if name not in titles:
                raise HTTPException(400, f"The checkpoint {name!r} is not installed. Available: {', '.join(titles)}.")
            options = {**options, "sd_model_checkpoint": name}
        service.options.update(options)
        return None

    @api.get("/sd-models", response_model=list[schemas.SdModelItem])
    def list_models():
        return sd_models(service)

    @api.get("/samplers", response_model=list[schemas.SdSamplerItem])
    def samplers():
        return [schemas.SdSamplerItem(name=name, aliases=[],
                                      options={"scheduler": "karras"} if "Karras" in name else {})
                for name in sd_common.SCHEDULERS]

    @api.get("/loras", response_model=list[schemas.SdLoraItem])
    def loras():
        folder = sd_common.loras_dir()
        from ..models.diffusion import list_loras

        return [schemas.SdLoraItem(name=Path(n).stem, alias=Path(n).stem, path=str(folder / n))
                for n in list_loras(folder)]

    @api.get("/scripts", response_model=schemas.SdScriptsList)
    def scripts():
        return schemas.SdScriptsList()

    @api.post("/png-info", response_model=schemas.SdPngInfoResponse)
    def png_info(request: schemas.SdPngInfoRequest):
        try:
            return read_png_info(decode_image_data(request.image))
        except UserError as exc:
            raise user_error_to_400(exc) from None

    return api


# --- Requests to run settings -------------------------------------------------------------------

def default_checkpoint(service: ApiService) -> str:
    return sd_common.DEMO_MODEL if service.config.demo else str(defaults(MODE).get("model"))


def current_checkpoint(service: ApiService) -> str:
    return service.options.get("sd_model_checkpoint") or default_checkpoint(service)


def checkpoint_name(title: str) -> str:
    return _HASH_SUFFIX.sub("", title.strip())


def sd_models(service: ApiService) -> list[schemas.SdModelItem]:
    from ..models.catalog import installed_sd_models

    items = [schemas.SdModelItem(title=sd_common.DEMO_MODEL, model_name=sd_common.DEMO_MODEL,
                                 filename=sd_common.DEMO_MODEL)]
    for name in installed_sd_models(str(defaults(MODE).get("model"))):
        local = sd_common.models_dir() / name
        items.append(schemas.SdModelItem(title=name, model_name=Path(name).stem,
                                         filename=str(local) if local.exists() else name))
    return items


def sampler(request: schemas.SdTxt2ImgRequest) -> str:
    """A1111 names a sampler and, since 1.9, a schedule ('Euler a' + 'karras'): our names join them."""
    name = request.sampler_name or request.sampler_index or "Euler"
    if (request.scheduler or "").lower() == "karras":
        try:
            return sd_common.resolve_scheduler(f"{name} Karras")
        except UserError:
            pass
    return name


def to_params(service: ApiService, request: schemas.SdTxt2ImgRequest) -> dict:
    checkpoint = checkpoint_name(str((request.override_settings or {}).get("sd_model_checkpoint")
                                     or current_checkpoint(service)))
    model = {"model": checkpoint, "demo": checkpoint == sd_common.DEMO_MODEL}
    return {"prompt": request.prompt, "negative": request.negative_prompt, "steps": request.steps,
            "cfg": request.cfg_scale, "size": [request.width, request.height],
            "seed": None if request.seed is None or request.seed < 0 else request.seed,
            "batch_size": request.batch_size, "batch_count": request.n_iter, "scheduler": sampler(request), **model}


def _generate(service: ApiService, request: schemas.SdTxt2ImgRequest, params: dict, image: bytes | None):
    try:
        run = service.submit(MODE, params, image, via="sdapi")
    except UserError as exc:
        raise user_error_to_400(exc) from None
    run = service.wait_until_finished(run)
    if run.status == runs.FAILED:
        raise HTTPException(500, run.details.get("error") or "The run failed.")
    parameters = request.model_dump()
    if not getattr(request, "include_init_images", False):
        parameters.pop("init_images", None)
    images = _image_files(run)
    encoded = [base64.b64encode(p.read_bytes()).decode("ascii") for p in images] if request.send_images else []
    return schemas.SdImageResponse(images=encoded, parameters=parameters, info=json.dumps(_info(run, images)))


def _image_files(run: runs.Run) -> list[Path]:
    records = run.details.get("images") or []
    files = [run.path / r["file"] for r in records if isinstance(r, dict) and r.get("file")]
    files = [f for f in files if f.is_file()]
    if not files and runs.output_image(run.path, run.details):
        files = [runs.output_image(run.path, run.details)]
    return files


def _info(run: runs.Run, images: list[Path]) -> dict:
    """A1111's ``info`` (Processed.js()) for the fields clients read, plus where the run lives."""
    from ..media import read_png_parameters

    d, params = run.details, runs.resolved_of(run.details)
    size = d.get("size") or params.get("size") or [0, 0]
    seeds = d.get("seeds") or [d.get("seed")]
    return {"prompt": d.get("prompt_used") or d.get("prompt"), "all_prompts": [d.get("prompt_used") or d.get("prompt")],
            "negative_prompt": d.get("negative_used") or params.get("negative"), "seed": d.get("seed"),
            "all_seeds": seeds, "width": size[0], "height": size[1], "sampler_name": params.get("scheduler"),
            "steps": params.get("steps"), "cfg_scale": params.get("cfg"),
            "sd_model_name": (d.get("model") or {}).get("name"), "batch_size": params.get("batch_size"),
            "infotexts": [read_png_parameters(p) or "" for p in images],
            "job_timestamp": (d.get("started") or "").replace("-", "").replace(":", "").replace("T", "")[:14],
            "run_id": run.run_id, "folder": str(run.path), "status": d.get("status")}


# --- Progress and PNG info ----------------------------------------------------------------------

def progress_of(service: ApiService, skip_current_image: bool) -> schemas.SdProgressResponse:
    run = service.current_run()
    if run is None:
        return schemas.SdProgressResponse(progress=0, eta_relative=0, state=schemas.SdProgressState())
    d = run.details
    step, total = (d.get("progress") or {}).get("step") or 0, (d.get("progress") or {}).get("total") or 0
    fraction = min(step / total, 1.0) if total > 0 else 0.01
    image = None if skip_current_image else queue.latest_image(run.path)
    state = schemas.SdProgressState(
        interrupted=run.file(runs.STOP_REQUEST).exists(), job=run.run_id,
        job_count=1 + len(queue.entries(service.config.output_dir)), sampling_step=step,
        sampling_steps=max(total, 0), job_timestamp=str(d.get("started") or "0"))
    current = base64.b64encode(image.read_bytes()).decode("ascii") if image is not None else None
    return schemas.SdProgressResponse(progress=fraction, eta_relative=d.get("eta_s") or 0, state=state,
                                      current_image=current, textinfo=d.get("prompt"))


def read_png_info(data: bytes) -> schemas.SdPngInfoResponse:
    """The 'parameters' text of an image and its fields (A1111's names: 'Prompt', 'Negative prompt', …)."""
    from PIL import Image, UnidentifiedImageError

    from ..media import parse_parameters

    try:
        with Image.open(io.BytesIO(data)) as image:  # text chunks only: the pixels are never decoded
            text_items = {k: v for k, v in image.info.items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise UserError("The image is not one Pillow can read: send a PNG, JPEG or WebP file.") from None
    info = text_items.pop("parameters", "")
    parameters: dict = {}
    if info:
        parsed = parse_parameters(info)
        parameters = {"Prompt": parsed.pop("prompt", ""), "Negative prompt": parsed.pop("negative", ""), **parsed}
    return schemas.SdPngInfoResponse(info=info, items=text_items, parameters=parameters)
