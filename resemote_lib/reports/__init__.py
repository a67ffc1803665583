"""Figures and reports: the paper's tables and figures, exploration, monitoring, explanations, the ablation."""
