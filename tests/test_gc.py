"""The garbage collector after startup: what startup built is frozen, the young are collected
less often."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from app.main import GC_YOUNG_THRESHOLD


async def test_startup_freezes_what_it_built(app: FastAPI) -> None:
    assert gc.get_freeze_count() > 0


async def test_startup_collects_young_objects_less_often(app: FastAPI) -> None:
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
