"""The import ledger: which chunks of which file are stored already."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.columns import UTCDateTime
from app.core.engine import Base


class ImportChunk(Base):
    """One stored chunk of an import file, written in the chunk's own transaction.

    A file is known by the SHA-256 of its bytes, so a re-run (or a run resumed after a kill)
    skips exactly the chunks that committed. `chunk_rows` is the chunk size the first run used:
    a resumed run cuts the file the same way, whatever it was told.
    """

    __tablename__ = "import_chunk"

    file_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    chunk_rows: Mapped[int] = mapped_column(Integer)
    purchases: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())
