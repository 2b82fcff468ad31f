"""Typed configuration of aims-agent, its loader, and the shipped playbooks and control mappings."""
