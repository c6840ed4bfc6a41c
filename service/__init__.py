"""The Switchyard Flask service."""
