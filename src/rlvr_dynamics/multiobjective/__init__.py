"""Multi-objective RL: scalarization methods, CTWA, rewards, interference analysis."""
