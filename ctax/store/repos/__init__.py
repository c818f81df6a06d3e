"""Repositories: every query of the service, grouped by what it reads and writes. Plain functions taking the
session of the caller's unit of work (`Database.read()` / `write()`) first; nothing here commits."""
