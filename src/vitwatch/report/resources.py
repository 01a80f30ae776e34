"""The downloads a profile needs, checked before any notebook starts (fail fast)."""

from __future__ import annotations

from .errors import ReportError


def required_resources(cfg) -> list[str]:
    """Names of `downloads.RESOURCES` this profile needs, gathered from the loaders."""
    names: list[str] = []
    from ..data import imagenet_overlap, small, stanford_dogs
    from ..models import registry

    for module in (stanford_dogs, registry, small, imagenet_overlap):
        for name in module.required_resources(cfg):
            if name not in names:
                names.append(name)
    return names


def preflight(cfg) -> None:
    """Fail fast, before any long work, when a needed download is neither cached nor reachable."""
    from .. import downloads

    names = required_resources(cfg)
    if names:
        print(f"preflight: checking {len(names)} downloads ({', '.join(names)})", flush=True)
        try:
            status = downloads.preflight(names, cfg.cache_dir, cfg.dogs_archives_dir or None)
        except downloads.DownloadError as exc:
            raise ReportError(f"profile {cfg.profile!r} cannot start: {exc}") from None
        for name, state in status.items():
            optional = state not in ("cached", "reachable") and downloads.RESOURCES[name].optional
            print(
                f"  {name}: {state}"
                + (
                    "; optional: Kaggle Models is tried next, else the report goes on without it"
                    if optional
                    else ""
                ),
                flush=True,
            )
