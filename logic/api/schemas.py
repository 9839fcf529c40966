"""The API's request and response models: the one definition of its schema (OpenAPI is built from them).

Native models describe Atelier's own runs; the ``Sd*`` models follow AUTOMATIC1111's
``modules/api/models.py`` field for field where clients read them, so A1111 clients work unchanged.
Unknown fields in A1111 requests are accepted and ignored (clients send many extension settings).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# --- Native API ---------------------------------------------------------------------------------


class RunRequest(BaseModel):
    """A run of any engine: the same settings the CLI takes (see `python -m logic MODE --help`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"mode": "diffusion", "params": {"prompt": "a red fox in the snow", "steps": 20}}]})

    mode: str = Field(description="the engine: vqgan, diffusion or walk")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="engine settings by spec field name (prompt, steps, size, seed, …); "
                                               "left out = defaults.yaml")
    init_image: str | None = Field(None, description="an init image as base64 or a data: URI (img2img); "
                                                     "stored in the run's inputs/")


class Links(BaseModel):
    status: str
    preview: str
    image: str
    stop: str


class RunProgress(BaseModel):
    step: int = 0
    total: int | None = Field(None, description="-1 or null: runs until stopped")


class RunStatus(BaseModel):
    run_id: str
    folder: str = Field(description="the run folder (details.json, output.png, anim.mp4, …)")
    mode: str
    status: str = Field(description="queued, running, done, stopped, failed or interrupted")
    prompt: str = ""
    progress: RunProgress
    fraction: float | None = Field(None, description="step / total, 0-1 (for a progress bar)")
    it_s: float | None = None
    eta_s: float | None = None
    error: str | None = Field(None, description="one sentence when the run failed")
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    queue_position: int | None = Field(None, description="1 = next to run; null when not queued")
    links: Links


class QueueView(BaseModel):
    running: RunStatus | None = Field(None, description="the run on this server's device now, from any process")
    queued: list[RunStatus] = Field(description="every queued run of the output folder, in order")


class ModeInfo(BaseModel):
    mode: str
    title: str


class Health(BaseModel):
    status: str = "ok"
    device: str
    output: str
    worker: bool = Field(description="whether this server also runs the queue")


class Problem(BaseModel):
    detail: str = Field(description="one sentence that says what to change")


# --- AUTOMATIC1111-compatible subset (/sdapi/v1) ------------------------------------------------------


class SdTxt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    override_settings: dict[str, Any] | None = None
    send_images: bool = True
    save_images: bool = False


class SdImg2ImgRequest(SdTxt2ImgRequest):
    init_images: list[str] | None = None
    denoising_strength: float = 0.75
    include_init_images: bool = False


class SdImageResponse(BaseModel):
    images: list[str] | None = Field(None, description="base64 PNGs")
    parameters: dict[str, Any]
    info: str = Field(description="JSON text: prompt, seeds, size, sampler, infotexts, run_id, folder")


class SdProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class SdProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: SdProgressState
    current_image: str | None = None
    textinfo: str | None = None


class SdModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class SdSamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SdLoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class SdScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class SdPngInfoRequest(BaseModel):
    image: str = Field(description="base64 or data: URI")


class SdPngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
