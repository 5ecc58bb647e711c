"""Speed measurements of the project's training, sampling and feature paths against plain baselines (issue #7)."""
