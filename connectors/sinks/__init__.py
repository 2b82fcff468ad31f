"""Built-in incident sinks (registered under the ``aims_agent.sinks`` entry-point group)."""
