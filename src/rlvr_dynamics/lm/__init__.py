"""The language-model RL engine: tiny and real base policies, the TRL-based trainer, diagnostics, rewards."""
