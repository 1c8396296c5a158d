"""Checkpoint directories on disk: provenance note, atomic staging, the pinned
hub download and the per-user cache. Used by modelctl and trainer; imports
neither."""
