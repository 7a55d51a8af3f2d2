"""The build report: what a variant's (or a sweep's) report shows, its charts, and the files."""

from .write import write_sweep_report, write_variant_report

__all__ = ["write_sweep_report", "write_variant_report"]
