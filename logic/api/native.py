"""Atelier's own API (/api/v1): runs of every engine through the shared queue.

Seed 003's four endpoints map onto these (docs/api.md): text to image = ``POST /runs``; text +
image to image = ``POST /runs`` with ``init_image`` (base64) or ``POST /runs/upload`` (a file);
the latest progress image = ``GET /runs/{id}/preview``; the progress bar = ``GET /runs/{id}``.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse

from .. import queue, runs
from ..engines import ENGINE_MODULES, get_engine
from ..errors import UserError
from . import schemas
from .service import ApiService, check_found, user_error_to_400

ERRORS = {400: {"model": schemas.Problem}, 404: {"model": schemas.Problem}}


def router(service: ApiService) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["runs"], responses=ERRORS)

    @api.get("/health", response_model=schemas.Health)
    def health():
        return schemas.Health(device=service.device, output=str(service.config.output_dir),
                              worker=service.worker_alive)

    @api.get("/modes", response_model=list[schemas.ModeInfo])
    def modes():
        return [schemas.ModeInfo(mode=m, title=getattr(get_engine(m), "TITLE", m)) for m in ENGINE_MODULES]

    @api.post("/runs", response_model=schemas.RunStatus, status_code=201)
    def create_run(request: schemas.RunRequest):
        """Check the settings (a 400 carries the same sentence as the CLI) and queue the run."""
        try:
            run = service.submit_b64(request.mode, request.params, request.init_image)
        except UserError as exc:
            raise user_error_to_400(exc) from None
        return service.status(run)

    @api.post("/runs/upload", response_model=schemas.RunStatus, status_code=201)
    def create_run_with_file(request: str = Form(description="a RunRequest as JSON (without init_image)"),
                             init_image: UploadFile = File(description="the init image")):
        """Text + image to image with the image as an uploaded file (multipart/form-data)."""
        try:
            parsed = schemas.RunRequest.model_validate(json.loads(request))
        except ValueError:
            raise HTTPException(400, "The 'request' field must be a JSON object like "
                                     '{"mode": "diffusion", "params": {"prompt": "..."}}.') from None
        try:
            run = service.submit(parsed.mode, parsed.params, init_image.file.read())
        except UserError as exc:
            raise user_error_to_400(exc) from None
        return service.status(run)

    @api.get("/runs/{run_id}", response_model=schemas.RunStatus)
    def run_status(run_id: str):
        """Status, progress (step, total, fraction for a progress bar), it/s, ETA and the error sentence."""
        return service.status(check_found(service, run_id))

    @api.get("/runs/{run_id}/preview", responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
    def run_preview(run_id: str):
        """The latest image: the live preview while the run runs, then its final image."""
        image = queue.latest_image(check_found(service, run_id).path)
        if image is None:
            raise HTTPException(404, "This run has no image yet: ask again after its first preview.")
        return FileResponse(image, headers={"Cache-Control": "no-store"})

    @api.get("/runs/{run_id}/image", responses={200: {"content": {"image/png": {}}}})
    def run_image(run_id: str):
        run = check_found(service, run_id)
        image = runs.output_image(run.path, run.details)
        if image is None:
            raise HTTPException(404, f"The run {run_id} has no final image (it is {run.status}).")
        return FileResponse(image)

    @api.post("/runs/{run_id}/stop", response_model=schemas.RunStatus)
    def stop_run(run_id: str):
        """Stop a run (it saves what it made) or take a queued one out of the queue; any process's run."""
        run = check_found(service, run_id)
        queue.request_stop(run)
        return service.status(runs.open_run(run.path))

    @api.post("/runs/{run_id}/front", response_model=schemas.QueueView)
    def move_to_front(run_id: str):
        try:
            queue.move_to_front(check_found(service, run_id))
        except UserError as exc:
            raise user_error_to_400(exc) from None
        return service.queue_view()

    @api.post("/runs/{run_id}/requeue", response_model=schemas.RunStatus)
    def requeue(run_id: str):
        """Queue an interrupted (or failed, or stopped) run again in its folder."""
        run = check_found(service, run_id)
        try:
            queue.requeue(run)
        except UserError as exc:
            raise user_error_to_400(exc) from None
        service.wake()
        return service.status(runs.open_run(run.path))

    @api.get("/queue", response_model=schemas.QueueView)
    def show_queue():
        """The run on the device now (from any process) and every queued run, in order."""
        return service.queue_view()

    return api


def one_sentence(request: Request, exc) -> str:
    """A request that does not fit the schema, as one sentence (like every other 400)."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "the request"
    return f"{where}: {first.get('msg', 'invalid')}."
