"""AERELION: the backend of a managed-automation operator on Supabase-native PostgreSQL."""

__version__ = "0.1.0"
