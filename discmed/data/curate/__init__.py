"""Behaviour-preference curation (DISC-MedLLM's second training stage, done by people): candidate
replies per consultation (`candidates`), a web tool where annotators pick, reject and edit them
(`store` + `app`), and export to SFT JSONL, DPO pairs and agreement figures (`export`)."""
