"""What activation writes: one spec per value, its source column and its form in each destination.

Values are compared as canonical strings (rendered in SQL from `marts.customer_scores`, and
parsed back from what Klaviyo or Shopify currently hold), so "changed" means the same thing
for the state table, the plan and the read-back before sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class FieldSpec:
    name: str            # Klaviyo property name and activation field id
    column: str          # column of marts.customer_scores
    column_type: str     # DuckDB type the column is cast to
    kind: str            # decimal2 | decimal4 | text | date | datetime
    shopify_type: str    # metafield type
    trigger: bool = True  # a change of this value makes the customer be sent
    # a column that is set whenever this one's model scored the customer (this one may be null by
    # design): a store where this column is null for everyone is then told from one not scored
    scored_with: str | None = None

    @property
    def shopify_key(self) -> str:
        return self.name.removeprefix("clv_")


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("clv_predicted_12m", "predicted_clv", "double", "decimal2", "number_decimal"),
    FieldSpec("clv_tier", "clv_tier", "varchar", "text", "single_line_text_field"),
    FieldSpec("clv_p_alive", "p_alive", "double", "decimal4", "number_decimal"),
    # null when P(purchase within 90 days) is below date_min_probability (npd.next_purchase_contract)
    FieldSpec("clv_next_purchase_date", "predicted_next_purchase_date", "date", "date", "date",
              scored_with="p_purchase_30d"),
    FieldSpec("clv_p_purchase_30d", "p_purchase_30d", "double", "decimal4", "number_decimal"),
    FieldSpec("clv_rfm_segment", "rfm_segment", "varchar", "text", "single_line_text_field"),
    FieldSpec("clv_lifecycle_stage", "lifecycle_stage", "varchar", "text", "single_line_text_field"),
    FieldSpec("clv_model_version", "model_version", "varchar", "text", "single_line_text_field"),
    # Changes every scoring run: sent along with a customer's changed values, never on its own,
    # or every customer would be re-sent every night.
    FieldSpec("clv_scored_at", "scored_at", "timestamp", "datetime", "date_time", trigger=False),
)
BY_NAME = {f.name: f for f in FIELDS}

# Shopify tags (values 'true'/'false'): the rule is SQL over marts.customer_scores columns.
# tag -> (the column it needs, the rule over s = marts.customer_scores)
TAGS: dict[str, tuple[str, str]] = {
    "clv:top-5": ("clv_tier", "s.clv_tier in ('Top 1%', '1-5%')"),
    "clv:at-risk": ("lifecycle_stage", "s.lifecycle_stage = 'at_risk'"),
}
TAG_PREFIX = "tag:"
REQUIRED_COLUMNS = {"customer_id", "predicted_clv"}


def sql_render(spec: FieldSpec, expression: str) -> str:
    """SQL turning a typed column into the canonical string (null stays null: nothing is sent)."""
    return {
        "decimal2": f"printf('%.2f', {expression})",
        "decimal4": f"printf('%.4f', {expression})",
        "text": f"nullif(trim({expression}), '')",
        "date": f"strftime({expression}, '%Y-%m-%d')",
        "datetime": f"strftime({expression}, '%Y-%m-%dT%H:%M:%SZ')",
    }[spec.kind]


def canonical(kind: str, value: Any) -> str | None:
    """What a destination currently holds, as the canonical string (None when absent or unreadable)."""
    if value is None or value == "":
        return None
    try:
        if kind == "decimal2":
            return f"{float(value):.2f}"
        if kind == "decimal4":
            return f"{float(value):.4f}"
        if kind == "date":
            return str(value)[:10]
        if kind == "datetime":
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None
    return str(value)


def klaviyo_value(spec: FieldSpec, value: str) -> Any:
    """Numbers go to Klaviyo as JSON numbers so flows and segments can compare them."""
    return float(value) if spec.kind in {"decimal2", "decimal4"} else value
