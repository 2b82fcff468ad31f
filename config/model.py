"""Typed configuration: the AI system inventory (governance fields first-class) and how each system is watched.

One YAML file describes the agent (state store, HTTP listener, evidence retention), the incident sinks,
and the monitored AI systems. Each system is an inventory entry of the organisation's AIMS register:
who owns it, its role under the EU AI Act (provider, deployer or both), its risk tier, its impact
assessment, its model and life-cycle stage; then its data schema, reference, source, window, checks
and incident routing. Every model forbids unknown keys, so a typo is an error with its path.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from config.errors import Problem

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ID = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


def parse_duration(value: object) -> timedelta:
    """Parse ``30s``, ``15m``, ``1h``, ``7d``, ``2w`` or a number of seconds into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 1h, 7d)")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return timedelta(seconds=seconds)


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Role(StrEnum):
    """The organisation's role for this system under the EU AI Act; it changes the obligations."""

    provider = "provider"
    deployer = "deployer"
    provider_and_deployer = "provider_and_deployer"


class RiskTier(StrEnum):
    """Risk tier as recorded in the AIMS register (EU AI Act categories)."""

    unacceptable = "unacceptable"
    high = "high"
    limited = "limited"
    minimal = "minimal"


class LifecycleStage(StrEnum):
    """ISO/IEC 22989 life-cycle stages that matter at run time."""

    design = "design"
    development = "development"
    verification = "verification"
    deployment = "deployment"
    operation = "operation"
    re_evaluation = "re_evaluation"
    retired = "retired"


class Owner(Strict):
    team: str = Field(min_length=1)
    contact: str = Field(min_length=1, description="e-mail or on-call handle of the accountable owner")
    escalation: str | None = Field(default=None, description="who is told when the owner does not respond")


class ModelRef(Strict):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    provider_contact: str | None = Field(
        default=None, description="for deployers: the provider to inform first of a serious incident"
    )


class ColumnKind(StrEnum):
    numerical = "numerical"
    categorical = "categorical"


class PredictionKind(StrEnum):
    classification = "classification"  # class labels
    score = "score"  # probability of the positive class, binarised at `threshold`
    regression = "regression"


class Prediction(Strict):
    column: str
    kind: PredictionKind = PredictionKind.classification
    pos_label: Any = 1
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class Schema(Strict):
    id_column: str | None = None
    timestamp_column: str
    features: dict[str, ColumnKind] = Field(min_length=1)
    prediction: Prediction | None = None
    label: str | None = None
    sensitive: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _columns_distinct(self) -> Schema:
        special = [c for c in (self.id_column, self.timestamp_column) if c]
        if self.prediction:
            special.append(self.prediction.column)
        if self.label:
            special.append(self.label)
        clash = sorted(set(special) & set(self.features))
        if clash:
            raise ValueError(f"columns listed both as features and as id/timestamp/prediction/label: {clash}")
        return self


class FileSourceConfig(Strict):
    type: Literal["file"] = "file"
    path: str = Field(min_length=1, description="a file, a folder or a glob of Parquet, CSV or JSON Lines files; "
                      "a URL (s3://, gs://, abfs://, file://) goes through fsspec")
    format: Literal["auto", "parquet", "csv", "jsonl"] = "auto"
    partitioning: Literal["auto", "hive", "none"] = Field(
        default="auto", description="hive: dt=YYYY-MM-DD[/hour=HH] folders pruned by the window; auto: when present")
    layout: Literal["table", "kserve"] = Field(
        default="table", description="kserve: the {id}-request/{id}-response objects of KServe's blob-storage logger")
    feature_names: list[str] = Field(
        default_factory=list, description="kserve layout: names of the positional inputs of v1/v2 payloads")
    prediction_column: str = Field(default="prediction", description="kserve layout: name given to the output")
    storage_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="fsspec options of the object store (endpoint, region, ...)")
    storage_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="fsspec options that are secrets (key, secret, token, ...)")


class SqlWatermark(Strict):
    column: str = Field(min_length=1)
    kind: Literal["timestamp", "id"] = "timestamp"


class SqlSourceConfig(Strict):
    type: Literal["sql"] = "sql"
    url: SecretStr = Field(description="SQLAlchemy URL; may carry a password, so it is treated as a secret")
    table: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")
    query: str | None = Field(default=None, description="a SELECT used as a subquery instead of a table")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    query_timeout_s: float = Field(default=300.0, gt=0, description="a slower query fails as SourceUnavailable")
    watermark: SqlWatermark | None = Field(
        default=None, description="kind id: rows are also readable after a monotonically increasing id column")
    pushdown: bool = Field(default=False, description="judge windows from aggregates computed by the database "
                                                      "(GROUP BY), so only kilobytes travel, not the window")
    pushdown_concurrency: int = Field(default=2, ge=1, le=32,
                                      description="aggregate queries of one window run on this many connections")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSourceConfig:
        if bool(self.table) == bool(self.query):
            raise ValueError("give exactly one of `table` or `query`")
        return self


class HttpSourceConfig(Strict):
    """A JSON endpoint returning prediction records, page by page."""

    type: Literal["http"] = "http"
    url: str = Field(min_length=1, description="http(s) URL of the JSON endpoint")
    records: str = Field(default="data", description="dotted path of the record list in each response")
    pagination: Literal["none", "cursor", "page"] = "none"
    cursor_field: str = Field(default="next_cursor", description="cursor pagination: dotted path of the next cursor")
    cursor_param: str = "cursor"
    page_param: str = "page"
    page_size_param: str | None = "page_size"
    page_size: int = Field(default=1000, ge=1)
    first_page: int = 1
    start_param: str | None = Field(default=None, description="query parameter given the window start (ISO 8601)")
    end_param: str | None = Field(default=None, description="query parameter given the window end (ISO 8601)")
    params: dict[str, str] = Field(default_factory=dict)
    auth_header: str = "Authorization"
    auth_value: SecretStr | None = Field(default=None, description="e.g. 'Bearer ...'; use ${ENV} or ${file:...}")
    timeout_s: float = Field(default=30.0, gt=0)
    max_pages: int = Field(default=10000, ge=1)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="refuse a larger total response")


class CloudEventsSourceConfig(Strict):
    """Joined inference-logger events stored by the agent's ingest endpoint."""

    type: Literal["cloudevents"] = "cloudevents"
    system: str | None = Field(default=None, description="events posted to /api/v1/ingest/{system}/cloudevents")
    inference_service: str | None = Field(default=None, description="or: ce-inferenceservicename to select")
    namespace: str | None = None
    feature_names: list[str] = Field(default_factory=list, description="names of positional inputs")
    prediction_column: str = "prediction"
    label_column: str = Field(default="label", description="column Seldon feedback truth goes to")
    id_column: str = Field(default="id", description="column the ce-id goes to")
    state_url: SecretStr | None = Field(default=None, description="default: the agent's own state store")


class SnapshotSourceConfig(Strict):
    """A frozen window (Parquet written by ``freeze_window``), checked against its digest."""

    type: Literal["snapshot"] = "snapshot"
    path: str = Field(min_length=1)
    digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                               description="sha256 the file must have; default: the one in its sidecar")


class PluginSourceConfig(BaseModel):
    """A source of a type no built-in provides: the plugin registered under that type validates the rest.

    The loader looks the type up among the ``aims_agent.sources`` entry points and validates these keys
    with the plugin's own ``config_model`` (every problem reported with the others); the runner hands
    the plugin that typed model. Values are kept out of ``repr`` since they may hold secrets.
    """

    model_config = ConfigDict(extra="allow")
    type: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    def __repr_args__(self) -> Any:
        yield "type", self.type
        yield "keys", sorted(self.model_extra or {})


BUILTIN_SOURCE_TYPES = ("file", "sql", "http", "cloudevents", "snapshot")


def _source_tag(value: Any) -> str | None:
    """The union member a source mapping validates as: its built-in type, or ``plugin``."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None  # pydantic reports the missing or non-text `type`
    return kind if kind in BUILTIN_SOURCE_TYPES and not isinstance(value, PluginSourceConfig) else "plugin"


SourceConfig = Annotated[
    Annotated[FileSourceConfig, Tag("file")]
    | Annotated[SqlSourceConfig, Tag("sql")]
    | Annotated[HttpSourceConfig, Tag("http")]
    | Annotated[CloudEventsSourceConfig, Tag("cloudevents")]
    | Annotated[SnapshotSourceConfig, Tag("snapshot")]
    | Annotated[PluginSourceConfig, Tag("plugin")],
    Discriminator(_source_tag, custom_error_type="source_type_missing",
                  custom_error_message="a source needs a `type` (file, sql, http, cloudevents, snapshot or a "
                  "plugin's type)"),
]


class Window(Strict):
    size: timedelta = Field(description="tumbling window length, e.g. 1h or 1d")
    lateness: timedelta = Field(
        default=timedelta(0), description="wait this long after a window ends before judging it"
    )
    min_rows: int = Field(default=100, ge=1, description="fewer rows: insufficient data, not a verdict")
    max_catch_up: int = Field(default=48, ge=1, description="windows judged at most per tick after a pause")
    start: datetime | None = Field(
        default=None, description="judge windows from this time on; default: the last complete window at first start"
    )

    @field_validator("size", "lateness", mode="before")
    @classmethod
    def _dur(cls, v: object) -> timedelta:
        if v == 0 or v == "0":
            return timedelta(0)
        return parse_duration(v)

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v


class LabelsConfig(Strict):
    """Ground truth that arrives after the prediction, joined on the prediction id.

    Checks that need labels (performance; fairness metrics built on error rates) are judged for a
    window only once ``max_delay`` has passed after it ended; rows still without a label then are left
    out, and below ``checks.performance.min_labels`` the verdict is insufficient data.
    """

    source: SourceConfig | None = Field(
        default=None, description="where labels are logged; default: schema.label in the prediction source, "
        "filled in later")
    id_column: str | None = Field(default=None, description="prediction id in the label source (default: "
                                  "schema.id_column)")
    column: str | None = Field(default=None, description="label column in the label source (default: schema.label)")
    timestamp_column: str | None = Field(default=None, description="when the label was recorded (default: "
                                         "schema.timestamp_column)")
    max_delay: timedelta = Field(default=timedelta(0), description="how long after a window ends its labels may "
                                 "still arrive, e.g. 7d")

    @field_validator("max_delay", mode="before")
    @classmethod
    def _dur(cls, v: object) -> timedelta:
        if v == 0 or v == "0":
            return timedelta(0)
        return parse_duration(v)


class Schedule(Strict):
    every: timedelta | None = None
    cron: str | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _dur(cls, v: object) -> timedelta | None:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of `every` or `cron`")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError("`cron` takes five fields: minute hour day month day-of-week")
        return self


class Hysteresis(Strict):
    open_after: int = Field(default=1, ge=1, description="consecutive breaching windows before an incident opens")
    close_after: int = Field(default=1, ge=1, description="consecutive clean windows before it resolves")


def drift_methods() -> dict[str, frozenset[str]]:
    """Every drift method that can be named (evidently's stattest names) and the column kinds it applies to.

    The names come from ``metrics.names`` (which ``metrics.stattests`` implements, a test holds them
    equal), so a method the metrics layer does not know is a configuration error, not a failing window,
    and validating a config does not import numpy or scipy.
    """
    from metrics.names import METHOD_KINDS

    return dict(METHOD_KINDS)


def _known_method(name: str) -> str:
    methods = drift_methods()
    if name != "auto" and name not in methods:
        raise ValueError(f"unknown drift method {name!r} (use auto or one of: {', '.join(sorted(methods))})")
    return name


class DriftCheck(Strict):
    enabled: bool = True
    method: str = Field(default="auto", description="auto (evidently's choice) or an evidently stattest name")
    threshold: float | None = Field(default=None, gt=0)
    per_column: dict[str, str] = Field(default_factory=dict, description="column -> stattest name")
    per_column_threshold: dict[str, float] = Field(default_factory=dict)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    fdr_alpha: float | None = Field(default=None, gt=0, lt=1, description="Benjamini-Hochberg over p-values")
    prediction: bool = Field(default=True, description="also watch drift of the prediction column")
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return _known_method(v)

    @field_validator("per_column")
    @classmethod
    def _per_column(cls, v: dict[str, str]) -> dict[str, str]:
        problems = []
        for column, name in v.items():
            try:
                _known_method(name)
            except ValueError as exc:
                problems.append(f"{column}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return v


FairnessMetric = Literal[
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equal_opportunity_difference",
]


class FairnessCheck(Strict):
    enabled: bool = True
    sensitive: list[str] = Field(
        default_factory=list, description="features to judge separately; 'a+b' judges the intersection"
    )
    metric: FairnessMetric = "demographic_parity_difference"
    threshold: float = Field(default=0.1, gt=0)
    min_group_size: int = Field(default=30, ge=1)
    require_significance: bool = Field(default=True, description="breach only when the gap is not chance")
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)


#: Performance metrics by what the prediction is (``schema.prediction.kind``): class labels give the
#: confusion-matrix metrics, scores add the ones that need a probability, regression has its own.
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")
SCORE_METRICS = (*CLASSIFICATION_METRICS, "roc_auc", "log_loss", "brier")
REGRESSION_METRICS = ("mae", "rmse", "r2")
PerformanceMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier", "mae", "rmse",
                            "r2"]


class PerformanceCheck(Strict):
    enabled: bool = True
    metric: PerformanceMetric = "accuracy"
    min: float | None = None
    max: float | None = None
    min_labels: int = Field(default=50, ge=1)
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)

    @model_validator(mode="after")
    def _bound(self) -> PerformanceCheck:
        if self.enabled and self.min is None and self.max is None:
            raise ValueError("give `min` or `max` (or both) for the performance metric")
        return self


class DataQualityCheck(Strict):
    enabled: bool = True
    max_missing_share: float = Field(default=0.1, ge=0, le=1)
    max_out_of_range_share: float = Field(default=0.05, ge=0, le=1)
    max_unseen_category_share: float = Field(default=0.05, ge=0, le=1)
    max_type_error_share: float = Field(default=0.0, ge=0, le=1)
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)


class Checks(Strict):
    drift: DriftCheck = Field(default_factory=DriftCheck)
    fairness: FairnessCheck = Field(default_factory=lambda: FairnessCheck(enabled=False))
    performance: PerformanceCheck = Field(default_factory=lambda: PerformanceCheck(enabled=False))
    data_quality: DataQualityCheck = Field(default_factory=DataQualityCheck)


class Routing(Strict):
    sinks: list[str] = Field(default_factory=lambda: ["local"], description="names of sinks under `sinks:`")
    update_every: timedelta | None = Field(
        default=None, description="while an incident stays open, add a comment with the latest measurement "
        "at most this often (checked at each check run), e.g. 1d")
    playbooks: str | None = Field(
        default=None, description="a playbook YAML whose `kinds:` override the shipped ones for this system")

    @field_validator("update_every", mode="before")
    @classmethod
    def _every(cls, v: object) -> timedelta | None:
        return None if v is None else parse_duration(v)


class SystemConfig(Strict):
    """One AI system: an inventory entry plus how it is monitored."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    decisions: list[str] = Field(default_factory=list, description="decisions the system influences")
    data_consumed: list[str] = Field(default_factory=list, description="categories of data it consumes")
    owner: Owner
    role: Role
    risk_tier: RiskTier
    eu_ai_act_high_risk: bool = False
    impact_assessment_ref: str | None = None
    risk_register_ids: list[str] = Field(default_factory=list)
    model: ModelRef
    lifecycle_stage: LifecycleStage = LifecycleStage.operation
    affected_groups: list[str] = Field(default_factory=list)
    critical_infrastructure: bool = False

    schema_: Schema = Field(alias="schema")
    reference: SourceConfig
    source: SourceConfig
    window: Window
    labels: LabelsConfig | None = None
    schedule: Schedule
    checks: Checks = Field(default_factory=Checks)
    incidents: Routing = Field(default_factory=Routing)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @model_validator(mode="after")
    def _consistent(self) -> SystemConfig:
        problems: list[str] = []
        if self.eu_ai_act_high_risk and self.risk_tier is not RiskTier.high:
            problems.append("eu_ai_act_high_risk is true but risk_tier is not 'high'")
        known = set(self.schema_.features) | set(self.schema_.sensitive)
        for spec in self.checks.fairness.sensitive:
            for part in spec.split("+"):
                if part not in self.schema_.sensitive:
                    problems.append(f"checks.fairness.sensitive names {part!r}, not in schema.sensitive")
        if self.checks.fairness.enabled:
            if not self.schema_.prediction:
                problems.append("checks.fairness needs schema.prediction")
            if not self.checks.fairness.sensitive:
                problems.append("checks.fairness needs at least one sensitive feature")
        if self.checks.performance.enabled and not (self.schema_.label and self.schema_.prediction):
            problems.append("checks.performance needs schema.label and schema.prediction")
        if self.labels is not None:
            if not self.schema_.label:
                problems.append("labels needs schema.label (the name the joined label takes)")
            if self.labels.source is not None and not (self.labels.id_column or self.schema_.id_column):
                problems.append("labels.source needs an id to join on: labels.id_column or schema.id_column")
        for col in list(self.checks.drift.per_column) + list(self.checks.drift.per_column_threshold):
            if col not in known and not (self.schema_.prediction and col == self.schema_.prediction.column):
                problems.append(f"checks.drift.per_column names {col!r}, not a feature")
        if problems:
            raise ValueError("; ".join(problems))
        return self


_PREDICTION_COLUMN_KIND = {PredictionKind.classification: ColumnKind.categorical,
                           PredictionKind.score: ColumnKind.numerical,
                           PredictionKind.regression: ColumnKind.numerical}
_METRICS_BY_PREDICTION = {PredictionKind.classification: CLASSIFICATION_METRICS,
                          PredictionKind.score: SCORE_METRICS,
                          PredictionKind.regression: REGRESSION_METRICS}


def check_problems(schema: Schema, checks: Checks) -> list[Problem]:
    """Checks that would otherwise fail at run time, every window: a drift method on a column kind it
    does not apply to, a performance metric the prediction kind cannot produce.

    Paths are relative to the system (``checks.drift.method``). They need only the schema and the
    checks, so the loader runs them even when another part of the system is invalid.
    """
    problems: list[Problem] = []
    drift = checks.drift
    if drift.enabled:
        methods = drift_methods()
        kinds: dict[str, ColumnKind] = dict(schema.features)
        if drift.prediction and schema.prediction is not None:
            kinds[schema.prediction.column] = _PREDICTION_COLUMN_KIND[schema.prediction.kind]
        unfit: dict[str, list[str]] = {}
        for column, kind in kinds.items():
            name = drift.per_column.get(column)
            if name is not None:
                if name != "auto" and name in methods and kind.value not in methods[name]:
                    problems.append(Problem(f"checks.drift.per_column.{column}",
                                            f"{name!r} does not apply to {column!r}, a {kind.value} column"))
            elif drift.method != "auto" and drift.method in methods and kind.value not in methods[drift.method]:
                unfit.setdefault(kind.value, []).append(column)
        for kind_name, columns in unfit.items():
            problems.append(Problem("checks.drift.method",
                                    f"{drift.method!r} does not apply to {kind_name} columns: {', '.join(columns)} "
                                    "(name a method for them under checks.drift.per_column)"))
    perf = checks.performance
    if perf.enabled and schema.prediction is not None:
        allowed = _METRICS_BY_PREDICTION[schema.prediction.kind]
        if perf.metric not in allowed:
            problems.append(Problem("checks.performance.metric",
                                    f"{perf.metric!r} cannot be computed for a {schema.prediction.kind.value} "
                                    f"prediction (schema.prediction.kind); use one of: {', '.join(allowed)}"))
    return problems


class LocalFolderSinkConfig(Strict):
    type: Literal["local_folder"] = "local_folder"
    path: str = "./aims-tickets"


class PluginSinkConfig(BaseModel):
    """A sink provided by a plugin: its own typed config validates the remaining keys."""

    model_config = ConfigDict(extra="allow")
    type: str


MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def ingest_network(value: str) -> str:
    """One entry of ``agent.server.ingest_without_token_from``: an address or a CIDR network, as written
    canonically (``10.42.0.0/16``; an address alone is its /32 or /128). Refused: what is not a network,
    a network with host bits set (``10.1.2.3/8``: which was meant?), IPv4 written as IPv4-mapped IPv6, and
    every address (``0.0.0.0/0``, ``::/0``): that would be ingest without authentication."""
    text = value.strip()
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR network (e.g. 127.0.0.1/32, 10.42.0.0/16, "
                             "fd00:42::/64)") from None
        raise ValueError(f"{value!r} has host bits set: write the network {loose}, or "
                         f"{text.split('/')[0]}/{loose.max_prefixlen} for that one address") from None
    if net.prefixlen == 0:
        raise ValueError(f"{value!r} is every address: ingest without a token from anywhere is refused "
                         "(list the inference loggers' networks, e.g. 127.0.0.1/32 for a logger in the same pod)")
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_IPV4_MAPPED):
        raise ValueError(f"{value!r} is IPv4 written as IPv6: write it as IPv4 (clients connecting as "
                         "::ffff:a.b.c.d are matched as a.b.c.d)")
    return str(net)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=1, le=65535)
    metrics_require_token: bool = False
    max_series_per_system: int = Field(
        default=500, ge=1, description="series budget per system across every family (see docs/deployment.md)")
    allow_unauthenticated_reads: bool = Field(
        default=False, description="serve reads without tokens on a non-loopback address (writes always need "
        "one); without it the agent refuses to start there with no `agent.tokens`")
    max_event_bytes: int = Field(
        default=1 << 20, ge=1024, le=(1 << 24) - 1,
        description="largest CloudEvent body the ingest endpoint stores (413 above); at most 16 MiB - 1, "
        "MariaDB's MEDIUMTEXT")
    ingest_without_token_from: list[Annotated[str, AfterValidator(ingest_network)]] = Field(
        default_factory=list,
        description="networks (CIDR) whose clients may post to the CloudEvents ingest without a token, for "
        "inference loggers that cannot send one (KServe's); judged on the TCP peer address, never on "
        "X-Forwarded-For. Default none: the ingest always needs an `ingest` token. 0.0.0.0/0 and ::/0 are refused")
    external_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s]+$",
        description="the URL people reach this agent's API at (e.g. https://aims.example.com); tickets link "
        "the evidence record and the report under it. Without it those links are left out")


class Token(Strict):
    name: str
    value: SecretStr
    scopes: list[Literal["read", "operate", "ingest"]] = Field(default_factory=lambda: ["read"])  # type: ignore[arg-type]

    @field_validator("value")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        # the length only: the value itself never goes into an error message
        n = len(value.get_secret_value().strip())
        if n < MIN_TOKEN_LENGTH:
            raise ValueError(f"a token needs at least {MIN_TOKEN_LENGTH} characters, this one has {n} "
                             "(generate one with `openssl rand -hex 32`)")
        return value


class SigningConfig(Strict):
    """Signs the evidence ledger's head (and each exported pack) so a rewritten chain is detected."""

    algorithm: Literal["hmac-sha256", "ed25519"] = "ed25519"
    key: SecretStr | None = Field(default=None, description="HMAC secret or Ed25519 private key (PEM); "
                                  "use ${file:...} or ${ENV}")
    key_file: str | None = Field(default=None, description="a file holding the key (relative to the config file)")

    @model_validator(mode="after")
    def _one_key(self) -> SigningConfig:
        if (self.key is None) == (self.key_file is None):
            raise ValueError("give exactly one of `key` or `key_file`")
        return self


class GrcConfig(Strict):
    """Optional push of evidence packs to a GRC tool (CISO Assistant's REST API)."""

    type: Literal["ciso_assistant"] = "ciso_assistant"
    url: str = Field(min_length=1, description="base URL, e.g. https://grc.example.com (the API is under /api/)")
    token: SecretStr = Field(description="a personal access token or service-account token")
    folder: str = Field(min_length=1, description="UUID of the folder (domain) the evidence belongs to")
    compliance_assessment: str | None = Field(
        default=None, description="UUID of the ISO 42001 audit whose requirement assessments get the evidence")
    evidence_name: str = Field(default="aims-agent evidence pack", min_length=1, max_length=200)
    allowed_hosts: list[str] = Field(default_factory=list, description="hosts the push may contact; default: the "
                                     "URL's host (loopback only when listed)")
    timeout_s: float = Field(default=30.0, gt=0)


class EvidenceConfig(Strict):
    retention_days: int = Field(default=190, ge=183, description="EU AI Act Arts. 19 and 26: at least 6 months")
    controls_file: str | None = Field(default=None, description="your Annex A mapping; default: shipped one")
    signing: SigningConfig | None = Field(default=None, description="sign the ledger head and exported packs")
    reassessment_drift_windows: int = Field(
        default=3, ge=1, description="drift in breach for this many consecutive windows triggers re-assessment")
    grc: GrcConfig | None = None


class OutboxConfig(Strict):
    """How long the delivery loop keeps trying a notification that fails with a retryable error."""

    retry_for: timedelta = Field(
        default=timedelta(days=7), description="give up on a message (dead, recorded as notification_failed) "
        "after it has failed for this long; permanent errors are dead at once")
    max_backoff: timedelta = Field(default=timedelta(minutes=10),
                                   description="the longest wait between two attempts (Retry-After may be longer)")

    @field_validator("retry_for", "max_backoff", mode="before")
    @classmethod
    def _dur(cls, v: object) -> timedelta:
        return parse_duration(v)


class WorkerConfig(Strict):
    """Where the service (`aims-agent run`) judges windows."""

    mode: Literal["process", "inline"] = Field(
        default="process", description="`process`: in a worker process, so the resident service never loads "
        "pandas, numpy or scipy; `inline`: in the service's own process")
    idle_exit: timedelta | None = Field(
        default=timedelta(minutes=5), description="the worker process exits after this long without a check "
        "(null: it stays); the next check starts a new one, which re-reads each system's reference")

    @field_validator("idle_exit", mode="before")
    @classmethod
    def _dur(cls, v: object) -> timedelta | None:
        return None if v is None else parse_duration(v)


class AgentSettings(Strict):
    state_url: SecretStr = SecretStr("sqlite:///./aims-state/state.db")
    server: ServerConfig = Field(default_factory=ServerConfig)
    tokens: list[Token] = Field(default_factory=list)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    playbooks_file: str | None = Field(
        default=None, description="the organisation's playbooks (relative to the config file): laid over the "
        "shipped ones, under each system's own `incidents.playbooks`")
    grafana_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$",
                                    description="Grafana's root URL; tickets link the system's dashboard panel")
    grafana_dashboard_uid: str = Field(default="aims-agent", min_length=1,
                                       description="uid of the imported aims-agent dashboard")

    @model_validator(mode="after")
    def _bind_is_safe(self) -> AgentSettings:
        problem = open_reads_problem(self, self.server.host)
        if problem:
            raise ValueError(problem)
        return self


def open_reads_problem(settings: AgentSettings, host: str) -> str | None:
    """Why serving on ``host`` would expose the API's reads to the network without a token, or None."""
    if settings.tokens or is_loopback(host) or settings.server.allow_unauthenticated_reads:
        return None
    return (f"the API would listen on {host}, beyond this machine, with no `agent.tokens`: anyone who reaches "
            "it reads the inventory, incidents and evidence. Add tokens, bind 127.0.0.1, or set "
            "`agent.server.allow_unauthenticated_reads: true` if a proxy in front authenticates")


def _default_sinks() -> dict[str, LocalFolderSinkConfig | PluginSinkConfig]:
    return {"local": LocalFolderSinkConfig()}


class AgentConfig(Strict):
    """The whole file."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    sinks: dict[str, LocalFolderSinkConfig | PluginSinkConfig] = Field(default_factory=_default_sinks)
    systems: list[SystemConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> AgentConfig:
        problems: list[str] = []
        seen: set[str] = set()
        for s in self.systems:
            if s.id in seen:
                problems.append(f"duplicate system id {s.id!r}")
            seen.add(s.id)
            for name in s.incidents.sinks:
                if name not in self.sinks:
                    problems.append(f"system {s.id!r} routes to sink {name!r}, which is not under `sinks:`")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def system(self, system_id: str) -> SystemConfig:
        for s in self.systems:
            if s.id == system_id:
                return s
        raise KeyError(system_id)
