"""A Hugging Face ``transformers`` ``TrainerCallback`` that records the training
run on the ledger and registers the trained model, so a training script needs
two lines::

    from modelchain.integrations.transformers import ModelchainCallback
    trainer = Trainer(model=..., args=..., train_dataset=...,
                      callbacks=[ModelchainCallback(led, model="fraud", datasets=["txns@3"])])

At the start of training it checks that the datasets (and base models) are
registered versions and that there is a signer, before any step runs. At the
end, on the main process only, it saves the model (``save_pretrained``:
safetensors and config, and the tokenizer or processor when the Trainer has one)
under ``<args.output_dir>/modelchain/<run id>``, records the run with the
TrainingArguments (secrets left out), the model's config, the git commit of
``code_dir``, the environment and the last value of every logged metric, then
registers that folder as the next version of ``model`` from that run.
Needs ``pip install 'modelchain[transformers]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers

from ..errors import UsageError
from ._training import RecordsRun

if TYPE_CHECKING:
    pass

__all__ = ["ModelchainCallback"]


def _config_summary(model: object) -> dict[str, Any]:
    """What says which model this is: its config's scalar settings that differ
    from the defaults (label maps and other large values left out), its
    class, architectures and number of parameters."""
    kind = type(model)
    summary: dict[str, Any] = {"class": f"{kind.__module__}.{kind.__qualname__}"}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_diff_dict"):
        for key, value in config.to_diff_dict().items():
            if value is None or isinstance(value, bool | int | float | str):
                summary[key] = value
        if isinstance(getattr(config, "architectures", None), list):
            summary["architectures"] = list(config.architectures)
    count = getattr(model, "num_parameters", None)
    if callable(count):
        summary["num_parameters"] = int(count())
    return summary


class ModelchainCallback(RecordsRun, transformers.TrainerCallback):
    """Record a ``Trainer`` run on ``led`` and register its model as ``model``.

    ``datasets`` and ``base_models`` are registered versions, ``"name@3"`` or
    ``("name", 3)``; with exactly one base model it is also the version's parent.
    ``register=False`` records the run only. ``output_dir`` is the folder the
    final model is saved in (it must be new or empty). ``run_id`` defaults to
    ``<model>-<UTC time>-<random>``. ``card`` goes on the model version; ``signer``
    defaults to the ledger's identity; ``code_dir`` is the git tree whose
    commit is recorded (None: none).

    After training, ``run_id``, ``folder``, ``metrics`` and ``version`` (the
    registered ``ModelVersion``, None with ``register=False``) say what was
    recorded. A ledger error at the end keeps its class and names the folder
    the model was saved in."""

    def on_train_begin(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        parameters = {
            "training_args": args.to_dict(),  # type: ignore[no-untyped-call]
            "model": _config_summary(kwargs.get("model")),
        }
        self._run.start(args.output_dir or ".", parameters)

    def on_log(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        logs: Mapping[str, object] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs:
            self._run.observe(logs)

    def on_evaluate(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        metrics: Mapping[str, object] | None = None,
        **kwargs: Any,
    ) -> None:
        if metrics:
            self._run.observe(metrics)

    def on_train_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        folder = self._run.folder
        if folder is None:  # on_train_begin never ran
            return
        self._run.observe({"global_step": state.global_step})
        # "tokenizer" before transformers 4.46 named the processing class
        processor = kwargs.get("processing_class") or kwargs.get("tokenizer")
        _save(kwargs.get("model"), processor, folder)
        self._run.finish()


def _save(model: object, processing_class: object, folder: Path) -> None:
    """The trained model as safetensors (with its config), and the tokenizer or
    processor beside it, as ``Trainer.save_model`` would."""
    folder.mkdir(parents=True, exist_ok=True)
    save_pretrained = getattr(model, "save_pretrained", None)
    if callable(save_pretrained):
        save_pretrained(folder)  # safetensors is the default since transformers 4.35
    elif isinstance(model, torch.nn.Module):
        from safetensors.torch import save_model

        save_model(model, str(folder / "model.safetensors"), force_contiguous=True)
    else:
        raise UsageError(f"cannot save a {type(model).__name__} as safetensors")
    save_processor = getattr(processing_class, "save_pretrained", None)
    if callable(save_processor):
        save_processor(folder)
