"""Shared test setup: quiet TensorFlow, headless matplotlib, a throwaway cache per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
