"""A participant: trains on its partition (``partition-id`` of
``num-partitions`` in the SuperNode's node config). ``poison`` > 0 scales its
step by that much: the attacker the ledger's acceptance rule refuses."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mcfl_app.task import partition, train

app = ClientApp()


@app.train()
def fit(msg: Message, context: Context) -> Message:
    start = msg.content["arrays"].to_numpy_ndarrays()
    cfg = context.node_config
    x, y = partition(int(cfg["partition-id"]), int(cfg["num-partitions"]))
    run = context.run_config
    new = train(start, x, y, int(run["local-steps"]), float(run["learning-rate"]))
    scale = float(cfg.get("poison", 0))
    if scale > 0:
        new = [s + scale * (a - s) for a, s in zip(new, start, strict=True)]
    content = RecordDict(
        {"arrays": ArrayRecord(new), "metrics": MetricRecord({"num-examples": len(y)})}
    )
    return Message(content=content, reply_to=msg)
