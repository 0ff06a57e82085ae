"""Model cards shipped as package data (one Markdown file per curated entry)."""
