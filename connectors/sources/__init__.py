"""Built-in prediction sources (registered under the ``aims_agent.sources`` entry-point group)."""
