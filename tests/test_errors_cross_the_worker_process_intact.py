"""Every error the agent raises on purpose survives pickling with its message and its fields: the service
receives them from its worker process (``agent.worker``), and a ConfigError rebuilt from its message
would have listed one problem per character."""

from __future__ import annotations

import pickle

from config import errors
from config.errors import AimsError, ConfigError, LedgerIntegrityError, Problem, SinkError


def _subclasses(cls: type[AimsError]) -> list[type[AimsError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_every_error_round_trips_through_pickle() -> None:
    classes = _subclasses(AimsError)
    assert {ConfigError, LedgerIntegrityError, SinkError, errors.WorkerError} <= set(classes)
    for cls in classes:
        if issubclass(cls, ConfigError):
            err: AimsError = cls([Problem("systems.0.id", "bad id"), Problem("agent.port", "not a port")], "c.yaml")
        elif issubclass(cls, LedgerIntegrityError):
            err = cls("record 7 was altered", seq=7)
        elif issubclass(cls, SinkError):
            err = cls("429 from Jira", retry_after=12.5)
        else:
            err = cls("the reason")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and str(back) == str(err), cls
        assert vars(back) == vars(err), cls


def test_a_config_error_keeps_every_problem() -> None:
    err = ConfigError([Problem("a", "first"), Problem("b", "second")], "agent.yaml")
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == err.problems and back.source == "agent.yaml"
    assert str(back) == "agent.yaml: a: first (and 1 more)"
