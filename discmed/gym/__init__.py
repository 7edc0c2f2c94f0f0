"""The consultation gym: case ledgers, checked patients, rewards from the ledger (see ledger.py)."""

from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "gym" / "ledgers.jsonl"  # hand-checked; held out from training
TRAINING = SHIPPED.with_name("train_ledgers.jsonl")  # what `train grpo` on the gym trains on
