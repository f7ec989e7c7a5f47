"""A PyTorch Lightning ``Callback`` that records the training run on the ledger
and registers the trained weights, so a training script needs two lines::

    from modelchain.integrations.lightning import ModelchainCallback
    trainer = Trainer(callbacks=[ModelchainCallback(led, model="fraud", datasets=["txns@3"])])

At the start of ``fit`` it checks that the datasets (and base models) are
registered versions and that there is a signer, before any step runs. At the
end, on global rank zero only, it saves the module's ``state_dict`` as
``model.safetensors`` under ``<trainer.default_root_dir>/modelchain/<run id>``,
records the run with the module's hyperparameters, the trainer's settings, the
git commit of ``code_dir``, the environment and the last value of every metric
the module logged (``trainer.callback_metrics``), then registers that folder as
the next version of ``model`` from that run.
Needs ``pip install 'modelchain[lightning]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl

from ._training import RecordsRun

if TYPE_CHECKING:
    pass

__all__ = ["WEIGHTS_FILE", "ModelchainCallback"]

WEIGHTS_FILE = "model.safetensors"


def _trainer_settings(trainer: pl.Trainer) -> dict[str, Any]:
    """The settings of ``trainer`` that shape the weights it trains."""
    loop = trainer.fit_loop
    return {
        "max_epochs": loop.max_epochs,
        "max_steps": loop.max_steps,
        "precision": trainer.precision,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "gradient_clip_val": trainer.gradient_clip_val,
        "gradient_clip_algorithm": trainer.gradient_clip_algorithm,
        "world_size": trainer.world_size,
        "strategy": type(trainer.strategy).__name__,
        "accelerator": type(trainer.accelerator).__name__,
    }


class ModelchainCallback(RecordsRun, pl.Callback):
    """Record a Lightning ``fit`` on ``led`` and register its weights as ``model``.

    ``datasets`` and ``base_models`` are registered versions, ``"name@3"`` or
    ``("name", 3)``; with exactly one base model it is also the version's parent.
    ``register=False`` records the run only. ``output_dir`` is the folder the
    final weights are saved in (it must be new or empty). ``run_id`` defaults
    to ``<model>-<UTC time>-<random>``. ``card`` goes on the model version;
    ``signer`` defaults to the ledger's identity; ``code_dir`` is the git tree
    whose commit is recorded (None: none).

    After ``fit``, ``run_id``, ``folder``, ``metrics`` and ``version`` (the
    registered ``ModelVersion``, None with ``register=False``) say what was
    recorded. A ledger error at the end keeps its class and names the folder
    the weights were saved in."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        parameters = {
            "hparams": dict(pl_module.hparams),
            "trainer": _trainer_settings(trainer),
            "module": {
                "class": f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
                "num_parameters": sum(p.numel() for p in pl_module.parameters()),
            },
        }
        self._run.start(trainer.default_root_dir, parameters)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        folder = self._run.folder
        if folder is None:  # on_fit_start never ran
            return
        self._run.observe(trainer.callback_metrics)
        self._run.observe({"global_step": trainer.global_step})
        from safetensors.torch import save_model

        folder.mkdir(parents=True, exist_ok=True)
        # save_model drops the aliases of shared tensors, which save_file refuses.
        save_model(pl_module, str(folder / WEIGHTS_FILE), force_contiguous=True)
        self._run.finish()
