"""Cost model of the deployed pipeline: USD per month and per million orders at a given order rate.

Pure arithmetic (no I/O, no AWS calls). docs/cost.md explains each formula; `clearing cost
--orders-per-second R` prints the estimate. Prices are us-east-1 list prices noted in `Prices`;
pass your own `Prices` for another region or a negotiated rate.

The variable cost is dominated by DynamoDB writes: items written per order
(`Workload.dynamodb_items_per_order`, measured by the pipeline's benchmark) x write request units
per item x the on-demand write price.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True, slots=True)
class Prices:
    """List prices, USD, us-east-1 (AWS pricing pages, 2025). ESM poller price: check the Lambda page."""

    lambda_arm_gb_second: float = 0.0000133334
    lambda_requests_per_million: float = 0.20
    esm_event_poller_hour: float = 0.185  # Kafka ESM provisioned mode, per event poller unit hour
    dynamodb_write_per_million: float = 0.625  # on-demand write request units
    dynamodb_read_per_million: float = 0.125  # on-demand read request units
    dynamodb_storage_gb_month: float = 0.25
    dynamodb_pitr_gb_month: float = 0.20
    msk_broker_hour: float = 0.204  # kafka.m7g.large
    msk_storage_gb_month: float = 0.10
    nlb_hour: float = 0.0225
    nlb_lcu_hour: float = 0.006
    fargate_arm_vcpu_hour: float = 0.03238
    fargate_arm_gb_hour: float = 0.00356


@dataclass(frozen=True, slots=True)
class Stage:
    """One stream function: memory, records it reads per order, CPU time per record."""

    name: str
    memory_gb: float
    records_per_order: float
    ms_per_record: float


def default_stages(trades_per_order: float, exchange_orders_per_order: float) -> tuple[Stage, ...]:
    return (
        # orders.new (1) + orders.events (about 1.5 lifecycle events per order) + exchange.executions
        # (a TradeCaptureReportAck per trade report, about 2 ExecutionReports per exchange-routed order)
        Stage("validate_orders", 1.0, 2.5 + trades_per_order + 2 * exchange_orders_per_order, 0.15),
        Stage("match_orders", 2.0, 1.0, 0.10),
        Stage("clear_trades", 1.0, trades_per_order, 0.30),
        Stage("exchange_gateway", 0.5, trades_per_order + exchange_orders_per_order, 1.0),
    )


def effective_batch(
    records_per_partition_s: float, window_s: float, batch_size: int, overhead_ms: float, ms_per_record: float
) -> float:
    """Records per invocation on one partition (docs/scaling.md, "Latency"). A partition has one
    invocation at a time, so what arrives while one runs is the next batch: B = r x t_batch, i.e.
    B = r x t_overhead / (1 - r x t_record) (self-clocked; the stage cannot keep up when r x t_record
    >= 1, then batches are full). The window makes the poller wait up to `window_s` for more. Capped
    at BatchSize, at least one record."""
    r = records_per_partition_s
    t0, tr = overhead_ms / 1000, ms_per_record / 1000
    self_clocked = batch_size if r * tr >= 1 else r * t0 / (1 - r * tr)
    return max(1.0, min(float(batch_size), max(self_clocked, r * window_s)))


@dataclass(frozen=True, slots=True)
class Workload:
    """What drives the cost. Rates are during trading hours; fixed costs run all month."""

    orders_per_second: float
    dynamodb_items_per_order: float = 2.7  # measured: clearing bench handlers (2.63 memory, 2.73 moto run)
    write_units_per_item: float = 1.0  # items under 1 KB
    dynamodb_reads_per_order: float = 0.5  # strongly consistent 4 KB reads (checkpoints, snapshots)
    trades_per_order: float = 0.5
    exchange_orders_per_order: float = 0.05
    kafka_messages_per_order: float = 4.0  # orders.new, .accepted, .events (~1.5), trades.executed (~0.5)
    message_bytes: int = 600
    trading_hours_per_month: float = 136.5  # 6.5 h x 21 days
    partitions: int = 48
    batch_size: int = 1000
    batching_window_s: float = 0.0  # template.yaml's BatchingWindowSeconds default
    batch_overhead_ms: float = 60.0  # checkpoint read + write, snapshot load per batch
    kafka_mappings: int = 7
    pollers_per_mapping_min: int = 1
    msk_replication: int = 3
    msk_retention_days: float = 7.0
    broker_write_mb_s: float = 20.0  # sustained ingress x replication one m7g.large broker takes
    stored_bytes_per_order: float = 1500.0  # DynamoDB bytes kept per order (orders, trades, obligations)
    fargate_vcpu: float = 0.5
    fargate_gb: float = 1.0
    stages: tuple[Stage, ...] = field(default=())

    def resolved_stages(self) -> tuple[Stage, ...]:
        return self.stages or default_stages(self.trades_per_order, self.exchange_orders_per_order)


@dataclass(frozen=True, slots=True)
class CostEstimate:
    orders_per_second: float
    orders_per_month: float
    monthly_usd: dict[str, float]  # component -> USD per month
    details: dict[str, float]  # the intermediate figures (brokers, pollers, GB-seconds ...)

    @property
    def total_monthly_usd(self) -> float:
        return sum(self.monthly_usd.values())

    @property
    def per_million_orders_usd(self) -> dict[str, float]:
        millions = self.orders_per_month / 1e6
        return {k: (v / millions if millions else math.inf) for k, v in self.monthly_usd.items()}

    @property
    def total_per_million_orders_usd(self) -> float:
        millions = self.orders_per_month / 1e6
        return self.total_monthly_usd / millions if millions else math.inf

    def as_dict(self) -> dict:
        return {
            "orders_per_second": self.orders_per_second,
            "orders_per_month": self.orders_per_month,
            "monthly_usd": self.monthly_usd,
            "total_monthly_usd": self.total_monthly_usd,
            "per_million_orders_usd": self.per_million_orders_usd,
            "total_per_million_orders_usd": self.total_per_million_orders_usd,
            "details": self.details,
        }


def estimate(workload: Workload, prices: Prices | None = None) -> CostEstimate:
    """Monthly cost per component for `workload` (see docs/cost.md for each formula)."""
    p = prices or Prices()
    w = workload
    if w.orders_per_second < 0:
        raise ValueError("orders_per_second must be >= 0")
    trading_seconds = w.trading_hours_per_month * 3600
    orders_month = w.orders_per_second * trading_seconds

    # Lambda: GB-seconds = memory x (per-record time + batch overhead shared by the batch's records)
    gb_seconds_per_order = 0.0
    invocations_per_second = 0.0
    for stage in w.resolved_stages():
        records_s = w.orders_per_second * stage.records_per_order
        batch = effective_batch(
            records_s / max(1, w.partitions),
            w.batching_window_s,
            w.batch_size,
            w.batch_overhead_ms,
            stage.ms_per_record,
        )
        ms_per_record = stage.ms_per_record + w.batch_overhead_ms / batch
        gb_seconds_per_order += stage.memory_gb * stage.records_per_order * ms_per_record / 1000
        invocations_per_second += records_s / batch if records_s else 0.0
    lambda_compute = orders_month * gb_seconds_per_order * p.lambda_arm_gb_second
    lambda_requests = invocations_per_second * trading_seconds / 1e6 * p.lambda_requests_per_million

    # ESM pollers (provisioned mode): each poller moves up to 5 MB/s; minimum pollers run all month
    ingress_mb_s = w.orders_per_second * w.kafka_messages_per_order * w.message_bytes / 1e6
    pollers_needed = max(w.pollers_per_mapping_min * w.kafka_mappings, math.ceil(ingress_mb_s / 5.0))
    poller_hours = (
        w.pollers_per_mapping_min * w.kafka_mappings * HOURS_PER_MONTH
        + max(0, pollers_needed - w.pollers_per_mapping_min * w.kafka_mappings) * w.trading_hours_per_month
    )
    esm_pollers = poller_hours * p.esm_event_poller_hour

    # DynamoDB on demand
    wru = orders_month * w.dynamodb_items_per_order * w.write_units_per_item
    rru = orders_month * w.dynamodb_reads_per_order
    dynamodb_requests = wru / 1e6 * p.dynamodb_write_per_million + rru / 1e6 * p.dynamodb_read_per_million
    stored_gb = orders_month * w.stored_bytes_per_order / 1e9  # one month of data kept hot
    dynamodb_storage = stored_gb * (p.dynamodb_storage_gb_month + p.dynamodb_pitr_gb_month)

    # MSK provisioned: brokers in multiples of 3 (one per AZ) for replicated ingress
    brokers = 3 * max(1, math.ceil(ingress_mb_s * w.msk_replication / (w.broker_write_mb_s * 3)))
    msk_brokers = brokers * HOURS_PER_MONTH * p.msk_broker_hour
    retained_gb = (
        ingress_mb_s * 3600 * w.trading_hours_per_month / 21 * w.msk_retention_days / 1e3 * w.msk_replication
    )
    msk_storage = retained_gb * p.msk_storage_gb_month

    # NLB: hourly plus LCUs; TLS LCU = max(new conn/50 per s, active/3000, GB per hour); gateway traffic is small
    gateway_gb_hour = (
        w.orders_per_second * (w.trades_per_order + w.exchange_orders_per_order) * 400 * 3600 / 1e9
    )
    lcu = max(1.0, gateway_gb_hour)
    nlb = HOURS_PER_MONTH * (p.nlb_hour + lcu * p.nlb_lcu_hour)

    # Fargate: one proxy task all month (one FIX session)
    fargate = HOURS_PER_MONTH * (
        w.fargate_vcpu * p.fargate_arm_vcpu_hour + w.fargate_gb * p.fargate_arm_gb_hour
    )

    monthly = {
        "lambda_compute": lambda_compute,
        "lambda_requests": lambda_requests,
        "esm_pollers": esm_pollers,
        "dynamodb_requests": dynamodb_requests,
        "dynamodb_storage": dynamodb_storage,
        "msk_brokers": msk_brokers,
        "msk_storage": msk_storage,
        "nlb": nlb,
        "fargate_proxy": fargate,
    }
    details = {
        "lambda_gb_seconds_per_order": gb_seconds_per_order,
        "lambda_invocations_per_second": invocations_per_second,
        "kafka_ingress_mb_s": ingress_mb_s,
        "esm_pollers_at_peak": float(pollers_needed),
        "dynamodb_write_units_per_second": w.orders_per_second
        * w.dynamodb_items_per_order
        * w.write_units_per_item,
        "msk_brokers": float(brokers),
        "nlb_lcu": lcu,
    }
    return CostEstimate(w.orders_per_second, orders_month, monthly, details)


def prices_table(prices: Prices | None = None) -> dict[str, float]:
    return asdict(prices or Prices())
