-- Value limits (data_contracts.md, "Value limits"), as macros for the scripts that follow
-- (01_order_versions.sql; 03_file_rows.sql may use them too): a value outside them is a
-- rejected row with a reason, never a failed build. Every money value must satisfy
-- |x| < 10^12 and every quantity |q| <= 10^6, so that no sum or product staging computes
-- can leave DECIMAL(18,2) (or BIGINT). The DOUBLE casts only classify text as "a finite number"; values are never
-- taken through DOUBLE.
create or replace temp macro clv_amount_out_of_range(a) as
    coalesce(isfinite(try_cast(trim(a) as double)), false)
    and coalesce(abs(try_cast(trim(a) as decimal(38, 2))) >= 1000000000000, true);
create or replace temp macro clv_quantity_out_of_range(q) as
    coalesce(isfinite(try_cast(trim(q) as double)), false)
    and coalesce(abs(try_cast(trim(q) as double)) > 1000000, true);
-- quantity x unit price - discount of a line, in DECIMAL(38, 2): DuckDB types INTEGER x
-- DECIMAL(18, 2) as DECIMAL(18, 2), which overflows; DECIMAL(20, 0) x DECIMAL(18, 2) holds
-- any product of an INTEGER and a DECIMAL(18, 2). (DuckDB may evaluate every branch of an
-- OR, so this must not fail even on values the other guards reject.)
create or replace temp macro clv_line_value_out_of_range(q, price, discount) as
    coalesce(abs(cast(try_cast(trim(q) as integer) as decimal(20, 0)) * try_cast(trim(price) as decimal(18, 2))
                 - coalesce(try_cast(trim(discount) as decimal(18, 2)), 0)) >= 1000000000000, false);
