"""Pushes evidence packs into GRC tools (CISO Assistant), where the AIMS's audits and controls live."""
