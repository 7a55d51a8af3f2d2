"""Filesystem helpers every layer uses: atomic writes, hard links, project-relative paths, and
rendering the project's templates/ folder."""
