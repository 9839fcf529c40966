"""Loading a Stable Diffusion model for an engine under one cache key, its LoRAs, sampler and record."""

from __future__ import annotations

from ... import settings
from ...a1111 import extras as a1111_extras
from ...models import diffusion as sd
from .. import base
from .checks import DEMO_MODEL, loras_dir, models_dir, tokenizer_cache
from .schedulers import make_scheduler, sampler_for


def model_key(spec, device: str) -> tuple:
    """Equal for every SD mode and task with the same model and memory settings: the cache reuses it.

    LoRAs are not part of the key: they are set on the cached model for each run (``use_loras``),
    so switching LoRAs does not reload the model; tasks share it through ``SdModels.pipeline``.
    """
    return ("stable-diffusion", spec.model, spec.precision, spec.memory, device)


def load_models(spec, device: str, report=lambda message: None) -> sd.SdModels:
    if spec.model == DEMO_MODEL:
        from ...models.diffusion_demo import ensure_demo_sd

        report("Writing the demo model (first use)…")
        folder = ensure_demo_sd(settings.demo_dir(), tokenizer_cache())
        source = sd.ModelSource("folder", str(folder), DEMO_MODEL)
    else:
        source = sd.resolve_model(spec.model, models_dir())

    def plan_for(family):
        return sd.memory_plan(device, spec.precision, spec.memory, family=family)

    models = sd.load_sd(source, device, plan_for, tokenizer_cache(), report)
    models.demo = spec.model == DEMO_MODEL
    return models


def prepare(spec, models: sd.SdModels):
    """Put this run's LoRAs on the cached pipeline and round the size to what the family needs
    (recorded), for every task and walks alike."""
    use_loras(spec, models)
    a1111_extras.use_vae(models, getattr(spec, "vae", None))
    return base.round_size(spec, models.size_multiple)


def use_loras(spec, models: sd.SdModels) -> None:
    """This run's LoRAs on the (possibly cached) model; the last run's are taken off first."""
    sd.set_loras(models, [sd.parse_lora(item, loras_dir()) for item in a1111_extras.lora_items(spec)])


def lora_parameters(models: sd.SdModels) -> dict:
    """The LoRA fields of the 'parameters' text, as A1111 writes them (empty without LoRAs)."""
    from ...media import quote_value

    if not models.loras:
        return {}
    return {"Lora": "; ".join(f"{lora['name']}:{lora['weight']:g}" for lora in models.loras),
            "Lora hashes": quote_value(", ".join(f"{lora['name']}: {lora['hash']}" for lora in models.loras))}


def text_encoders(pipe) -> list[str]:
    """The text encoders the model runs with (an SD 3.5 file without its T5 tokenizer runs on its CLIPs)."""
    return [name for name in ("text_encoder", "text_encoder_2", "text_encoder_3") if getattr(pipe, name, None) is not None]


def describe_model(spec, models: sd.SdModels) -> dict:
    source, family = models.source, models.family
    return {
        "model": {"name": source.name, "kind": source.kind, "location": source.location,
                  "hash": models.model_hash, "token": source.token, "base": source.sidecar.get("base"),
                  "family": family.name, "family_title": family.title, "inpaint_model": models.inpaint_model,
                  "loras": [dict(lora) for lora in models.loras], "revision": models.revision,
                  "vae": models.vae, "text_encoders": text_encoders(models.pipe)},
        "family": family.name,
        "memory": models.plan.record(),
        "demo": models.demo,
    }


def use_scheduler(models: sd.SdModels, name: str) -> str:
    """Set the named sampler on the model's pipelines; returns the sampler that runs (flow models: Euler/Heun)."""
    config = models.pipe.scheduler.config
    scheduler = make_scheduler(name, config)
    models.pipe.scheduler = scheduler
    for pipe in models.pipes.values():
        pipe.scheduler = scheduler
    return sampler_for(name, config)


def family_parameters(models: sd.SdModels) -> dict:
    """What A1111-style readers learn about the model family (Atelier's own key; A1111 ignores it)."""
    return {"Model family": models.family.name}


def guidance_parameters(models: sd.SdModels, cfg: float) -> dict:
    """CFG as A1111 writes it; an embedded-guidance model (Flux) as Forge does: CFG 1 + Distilled CFG Scale."""
    if models.family.guidance == "embedded":
        return {"CFG scale": 1, "Distilled CFG Scale": cfg}
    return {"CFG scale": cfg}
