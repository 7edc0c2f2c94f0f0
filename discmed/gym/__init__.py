"""The consultation gym: case ledgers, checked patients, rewards from the ledger (see ledger.py)."""

from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "gym" / "ledgers.jsonl"
