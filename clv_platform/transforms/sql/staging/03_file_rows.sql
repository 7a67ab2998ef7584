-- Rows of imported transaction exports, typed and judged (rules: data_contracts.md, "Files").
--
-- * Ids written as integral floats by a spreadsheet (17850.0) are the same id as 17850, and so is
--   scientific notation that keeps every digit (1.7850E+04). Scientific notation that does not
--   (Excel's 1.23457E+11 for a 12-digit id) has lost digits: several customers or orders would
--   become one, so such a row is rejected with the reason instead.
-- * A customer id that is an e-mail address is compared without case (ann@x.com = ANN@x.com).
-- * A customer id that says there is none (N/A, nan, #N/A, guest, ...) is a missing customer id:
--   all guests would otherwise be one customer (a numeric placeholder such as WooCommerce's 0 can
--   be a real id elsewhere: the staging check customers_hold_plausible_order_shares warns of it).
-- * A totals row (`Total`, `Grand Total`, Excel's `<value> Total` subtotals) is not an order: rejected.
-- * An order status column (Status, Order Status, Payment Status; data_contracts.md) of a layout
--   other than Shopify's: cancelled, failed, unpaid (pending, on hold), draft, fully refunded and
--   unavailable (Olist's: never fulfilled, the payment returned) orders are rejected with their
--   status; any other status is a purchase.
-- * An order a workbook's returns sheet lists as returned (layout_fields.returned_on_sheet, set at
--   import: Tableau's Sample Superstore `Returns`) is rejected as returned, as a refunded status is.
-- * A file without an order id column (file_format 'transactions': customer, date, amount) has one
--   order per row, keyed by its customer, date and amount as written and its place among its
--   sheet's identical rows (`row:` and a hash): a log's two identical purchases are two orders (such
--   a file has nothing else to tell them apart), and a later file, or another sheet of the workbook,
--   that repeats the rows re-sends the same orders rather than doubling them.
-- * A row with the same values as read as an earlier row of the file, on any sheet, is a duplicate
--   row: a workbook's sheets that repeat rows (Online Retail II's 1-9 Dec 2010) count them once.
-- * A file whose decimals are written with a comma (decimal_separator = ',', detected per file
--   at import: `6,95`, `1.234,50`) is read as such. A currency code written with an amount
--   (`USD 12.00`) is the row's currency: one other than the store's is rejected like a currency
--   column's.
-- * Dash dates (`31-12-2023`, `12-31-2023`) are slash dates: the file's one day-first / month-first
--   decision reads both.
-- * A timestamp with an offset (…-05:00, …Z) is converted to the store's time zone; one
--   without is already in it. A Unix time (10 digits: seconds, 13: milliseconds) is an instant
--   too; an Excel date serial written as text (`45291`, `45291.25`) is a wall clock (1900 system).
-- * Line level (Online Retail): an invoice starting with "C" is a credit note (negative
--   quantity); its lines become refunds of the original sale in 05. An invoice starting with
--   "A" is a bad-debt adjustment, not a customer transaction. Zero-price lines carry no revenue.
--   Postage (POST, DOT, C2) and manual/adjustment codes (M, D, S, B, BANK CHARGES, AMAZONFEE,
--   CRUK, PADS) are kept as non-product lines of their invoice (line_kind).
-- * Order level and transactions: a row with a negative amount is a return, matched and booked
--   like a credit note without a stock code (the customer's latest order at or before it).
-- * Every amount must fit the limits of the data contract (|line| and |order| ≤
--   999,999,999,999.99, quantity a 32-bit integer); a value outside them is a rejected row,
--   never a failed staging. Arithmetic is done in DECIMAL(38, 4), which cannot overflow here.
-- * When the same order id arrives in two files, the most recently ingested file's *valid*
--   rows win (exports overlap in practice); a later file's invalid rows replace nothing.
-- * Shopify's orders export (file_format 'shopify_orders'; rules in data_contracts.md, "Files"):
--   one row per line item, the order's own columns on its first row only, so every line row
--   takes them from its order's head row (the first row of the same Name in the file that has
--   any). The customer is the normalized email (no email: a guest order, rejected like a missing
--   customer id); the order id is the numeric `Id` when it is an integer (`5123456789012.0` is
--   `5123456789012`; Excel's `5.12346E+12` has lost digits, so such an order is keyed by its
--   Name instead) and re-sends are matched by Name; `Created at` is read as the wall-clock time
--   it is written in (the shop's own time zone), so the order day is the day the shop saw.
--   The order's revenue comes from its Subtotal, refunds and cancellation (05_staging_tables.sql).
-- * A Shopify orders table from a warehouse (file_format 'shopify_table': Fivetran's `order`, dbt_shopify's
--   `shopify__orders`, Airbyte's `orders`; one row per order): an order-level file read with Shopify's
--   semantics, as the API path reads them: the customer is `customer_id` (Airbyte: its customer
--   object's id), else the customer of another order of the file with the same e-mail, else the
--   e-mail; test orders and rows the table marks deleted are rejected; a cancelled, voided or expired
--   order is kept as cancelled; the subtotal is the gross revenue, less the taxes when the prices
--   include them; `refund_subtotal` (Airbyte: its refunds' line-item subtotals) is its refunds, all of
--   it for a `refunded` order; a time without an offset is UTC (data_contracts.md, "Files").
-- a cell as a spreadsheet reads it: `="00123"` (an exporter's way to keep an id's leading zeros, or a
-- date or amount as text, when the CSV is opened in Excel: ERP and bank exports write it) is `00123`;
-- the id was `="00123"`, a customer apart from the same id in a file without the wrapper, and such a
-- date or amount was unparseable
create or replace temp macro clv_file_cell(t) as
    case when starts_with(t, '="') and ends_with(t, '"') and length(t) >= 3 then replace(t[3:-2], '""', '"') else t end;
-- a cell's text without the white space around it: trim() takes spaces (also no-break ones) but not a
-- line break or tab, which a cell edited by hand may end in (Alt+Enter, text pasted from elsewhere):
-- `c1` and `c1<line break>` are one customer
create or replace temp macro clv_file_id_trimmed(t) as
    trim(trim(t, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(160) || chr(8199) || chr(8201)
                 || chr(8239)));
-- an id as a spreadsheet may have written it: `17850.0` and `1.7850E+04` are `17850`; scientific
-- notation with fewer mantissa digits than the id has (`1.23457E+11`) stays as written and
-- clv_file_id_lost_digits says so
create or replace temp macro clv_file_id_lost_digits(t) as
    regexp_matches(clv_file_id_trimmed(t), '^[0-9](\.[0-9]*)?[eE]\+?[0-9]+$')
    and (length(regexp_extract(clv_file_id_trimmed(t), '^[0-9]\.?([0-9]*)[eE]', 1))
             < try_cast(regexp_extract(clv_file_id_trimmed(t), '[eE]\+?([0-9]+)$', 1) as integer)
         or ltrim(substr(regexp_extract(clv_file_id_trimmed(t), '^[0-9]\.?([0-9]*)[eE]', 1),
                         try_cast(regexp_extract(clv_file_id_trimmed(t), '[eE]\+?([0-9]+)$', 1) as integer) + 1), '0') <> '');
create or replace temp macro clv_file_id(t) as
    nullif(case
        when regexp_matches(clv_file_id_trimmed(t), '^[0-9](\.[0-9]*)?[eE]\+?[0-9]+$') and not clv_file_id_lost_digits(t)
            then coalesce(nullif(ltrim(substr(clv_file_id_trimmed(t), 1, 1)
                                       || substr(regexp_extract(clv_file_id_trimmed(t), '^[0-9]\.?([0-9]*)[eE]', 1), 1,
                                                 try_cast(regexp_extract(clv_file_id_trimmed(t), '[eE]\+?([0-9]+)$', 1) as integer)),
                                       '0'), ''), '0')
        else regexp_replace(clv_file_id_trimmed(t), '^([0-9]+)\.0+$', '\1')
    end, '');
-- a customer id: `clv_file_id`, and an e-mail address (a store that names its e-mail column as the
-- customer, [files.columns]) compared without case, as Shopify's export's e-mails are. A text that
-- says there is no id (`N/A`, `nan`, `#N/A`, `guest`, ...: what spreadsheets, pandas and shop
-- exports write for a guest) is no id: the row is a missing customer id, not one big customer.
create or replace temp macro clv_file_missing_id(t) as
    lower(clv_file_id_trimmed(t)) in ('nan', 'null', 'none', 'n/a', 'na', '#n/a', '-', 'guest', 'unknown', 'anonymous');
create or replace temp macro clv_file_customer(t) as
    case when clv_file_missing_id(t) then null
         when contains(clv_file_id_trimmed(t), '@') then lower(clv_file_id(t)) else clv_file_id(t) end;
-- a Shopify orders table's customer: its id, or the id of Airbyte's customer object (JSON); an object
-- without one, or not JSON, is no customer id
create or replace temp macro clv_file_table_customer(t) as
    case when starts_with(ltrim(t), '{') then case when json_valid(t) then json_extract_string(t, '$.id') end
         else t end;
-- a Shopify orders table's boolean as a warehouse writes it (true, t, 1, yes; case ignored); NULL is false
create or replace temp macro clv_file_flag(t) as coalesce(lower(trim(t)) in ('true', 't', '1', 'yes'), false);
-- a spreadsheet's totals label (data_contracts.md, "Files"): Excel's Subtotal command writes
-- `<value> Total` and `Grand Total` (German Excel `<value> Ergebnis`, `Gesamtergebnis`) in the column
-- it groups by, a table's total row `Total` (`Summe`), a sheet typed by hand `Subtotal`, `Sum`
create or replace temp macro clv_file_totals_label(t) as
    regexp_matches(lower(trim(t)), '^((grand|sub)[ -]?)?totals?$|^(gesamtergebnis|gesamtsumme|summe|sum)$|^.+ (total|ergebnis)$');
-- the order key of a row of a file without order ids: its customer, date and amount as written,
-- and which of the file's identical rows it is (1, 2, ...)
create or replace temp macro clv_file_row_key(customer, day, amount, occurrence) as
    case when clv_file_customer(customer) is not null and nullif(trim(day), '') is not null
         then 'row:' || substr(md5(concat_ws('|', clv_file_customer(customer), trim(day), coalesce(trim(amount), ''),
                                              occurrence)), 1, 16)
    end;
-- a time of day on a 12-hour clock (`3/1/2024 2:15 PM`, `2024-03-01 2:15:00 pm`: Excel's and many
-- US tools' text): read with its AM/PM, which a plain cast of the ISO form ignores (2:15 PM became 02:15)
create or replace temp macro clv_file_clock_text(t) as
    regexp_replace(regexp_replace(trim(t), '\s*([AaPp])\.?([Mm])\.?$', ' \1\2'), '\s+', ' ', 'g');
create or replace temp macro clv_file_twelve_hour(t, day_first) as
    case when regexp_matches(t, '[0-9]\s*[AaPp]\.?[Mm]\.?$') then coalesce(
        -- only a slash date's field order depends on the file
        case when day_first then try_strptime(clv_file_clock_text(t), ['%d/%m/%Y %I:%M %p', '%d/%m/%Y %I:%M:%S %p'])
             else try_strptime(clv_file_clock_text(t), ['%m/%d/%Y %I:%M %p', '%m/%d/%Y %I:%M:%S %p']) end,
        try_strptime(clv_file_clock_text(t), ['%Y-%m-%d %I:%M:%S %p', '%Y-%m-%d %I:%M %p', '%Y/%m/%d %I:%M:%S %p',
                                              '%Y/%m/%d %I:%M %p', '%d.%m.%Y %I:%M %p', '%d.%m.%Y %I:%M:%S %p',
                                              '%b %d, %Y %I:%M %p', '%b %d, %Y %I:%M:%S %p', '%B %d, %Y %I:%M %p',
                                              '%B %d, %Y %I:%M:%S %p', '%d %b %Y %I:%M %p', '%d %b %Y %I:%M:%S %p',
                                              '%d %B %Y %I:%M %p', '%d %B %Y %I:%M:%S %p', '%d-%b-%Y %I:%M %p',
                                              '%d-%b-%Y %I:%M:%S %p', '%d-%B-%Y %I:%M %p', '%d-%B-%Y %I:%M:%S %p']))
    end;
-- a date written with its month's English name (`10-Mar-2024`, `10 March 2024`, `Mar 10, 2024`) or
-- as compact yyyymmdd (`20240310`): one reading only, whatever way the file writes slash dates; a
-- date written to the month only (`2024-03`, `2024/3`, `03/2024`, `Mar 2024`, `March 2024`: an
-- accounting export's period, a monthly report) is its month's first day (it was rejected as
-- unparseable; the orders then fall on the first of each month, a rhythm, transforms/order_gaps.py)
create or replace temp macro clv_file_unambiguous_date(t) as coalesce(
    -- each way of writing the date with each clock: a day's month named short or in full, with or without
    -- the time's seconds (`10 March 2024 21:15:00` and `March 10, 2024 21:15:00` were rejected)
    try_strptime(t, ['%d-%b-%Y %H:%M:%S', '%d-%b-%Y %H:%M', '%d-%b-%Y', '%d-%B-%Y %H:%M:%S', '%d-%B-%Y %H:%M',
                     '%d-%B-%Y', '%d %b %Y %H:%M:%S', '%d %b %Y %H:%M', '%d %b %Y', '%d %B %Y %H:%M:%S',
                     '%d %B %Y %H:%M', '%d %B %Y', '%b %d, %Y %H:%M:%S', '%b %d, %Y %H:%M', '%b %d, %Y',
                     '%B %d, %Y %H:%M:%S', '%B %d, %Y %H:%M', '%B %d, %Y', '%d.%m.%Y %H:%M:%S']),
    case when regexp_matches(t, '^[0-9]{8}$') then try_strptime(t, '%Y%m%d') end,
    case when regexp_matches(t, '^[0-9]{4}[-/][0-9]{1,2}$|^[0-9]{1,2}/[0-9]{4}$|^[A-Za-z]{3,9} [0-9]{4}$')
         then try_strptime(t, ['%Y-%m', '%Y/%m', '%m/%Y', '%b %Y', '%B %Y']) end);
-- whether a slash date reads day-first: a day-first file, or a row of a contradictory one whose
-- first field can only be a day (the file's decision: slash_dates below)
create or replace temp macro clv_file_reads_day_first(t, day_first_seen, month_first_seen) as
    day_first_seen and (not month_first_seen or try_cast(regexp_extract(t, '^([0-9]{1,2})/', 1) as integer) > 12);
-- a slash or dot date with a two-digit year (`12/31/23`: Etsy's Sold Orders, Excel's m/d/yy; `31.12.23`),
-- or a month name's (`31-Dec-23`: Excel's built-in d-mmm-yy, as a CSV saved from it writes it; `31 Dec 23`)
-- written with its century, 00-68 as 2000-2068 and 69-99 as 1969-1999 (strptime's %y): read with
-- %Y, `23` was the year 23, and a cast read `1/5/23` as 0001-05-23
create or replace temp macro clv_file_two_digit_year_parts(t) as
    regexp_extract(t, '^([0-9]{1,2}[/.][0-9]{1,2}[/.]|[0-9]{1,2}[- ][A-Za-z]{3,9}[- ])([0-9]{2})([ T].*)?$',
                   ['head', 'year', 'tail']);
create or replace temp macro clv_file_full_year(t) as
    case when regexp_matches(t, '^([0-9]{1,2}[/.][0-9]{1,2}[/.]|[0-9]{1,2}[- ][A-Za-z]{3,9}[- ])[0-9]{2}([ T].*)?$')
         then clv_file_two_digit_year_parts(t).head
              || case when cast(clv_file_two_digit_year_parts(t).year as integer) < 69 then '20' else '19' end
              || clv_file_two_digit_year_parts(t).year || clv_file_two_digit_year_parts(t).tail
         else t end;
-- a time's zone as a cast reads it: JavaScript's `… GMT-0800 (Pacific Standard Time)` without the
-- zone's name in parentheses, `GMT+1` / `UTC-05:00` as the offsets +0100 / -0500
create or replace temp macro clv_file_zone_text(t) as
    regexp_replace(regexp_replace(regexp_replace(t,
        '\s*\([A-Za-z][A-Za-z .]*\)$', ''),
        '\s*(?:GMT|UTC)([+-])([0-9])$', ' \10\200'),
        '\s*(?:GMT|UTC)([+-][0-9]{2}):?([0-9]{2})?$', ' \1\2');
-- a date and its time joined as a cast reads them: by a space, not by `at` (`March 9, 2024 at 9:15 PM`,
-- `9 Mar 2024 at 21:15`: Apple's formatting) or a comma (`3/9/2024, 9:15:00 PM`, `09/03/2024, 21:15:00`,
-- `9.3.2024, 21:15:00`: JavaScript's toLocaleString in the US, British and German locales, the
-- timestamps of many web apps' exports; `Dec 31, 2023, 10:30 PM`); ISO 8601's basic format
-- (`20240309T211500Z`, `20240309 211500`, `20240309T2115-0500`: iCalendar, some APIs and loggers) in
-- its extended one; and a decimal comma in the seconds (`21:15:00,250`: ISO 8601 allows it, Python's
-- logging writes it) as a point
create or replace temp macro clv_file_clock_joined(t) as
    regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(t,
        '([0-9]{4}),?\s+(?i:at)\s+([0-9])', '\1 \2'),
        '([0-9]),\s*([0-9]{1,2}:[0-9]{2})', '\1 \2'),
        '^([0-9]{4})([01][0-9])([0-3][0-9])[T ]?([0-2][0-9])([0-5][0-9])([0-5][0-9])([.,][0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?$',
        '\1-\2-\3T\4:\5:\6\7\8'),
        '^([0-9]{4})([01][0-9])([0-3][0-9])T([0-2][0-9])([0-5][0-9])(Z|[+-][0-9]{2}:?[0-9]{2})?$', '\1-\2-\3T\4:\5\6'),
        '([0-9]:[0-9]{2}:[0-9]{2}),([0-9]+)', '\1.\2');
-- an order date's text as the rules below read it: without an English weekday name before it (Excel's
-- long date `Sunday, December 31, 2023`, `Sun 31 Dec 2023`: a CSV saved from a sheet formatted so
-- writes them); a day's ordinal suffix left out (`March 10th, 2024`, `1st Jan 2024`: dates typed
-- by hand); a two-digit year with its century; a d-m-y / m-d-y
-- date written with dashes (`31-12-2023`, `12-31-2023 10:30`) with slashes, so that the file's one
-- day-first / month-first decision (slash_dates) reads both; a month name's date without the comma
-- after its day (`Dec 31 2023`) with it; an abbreviated month's dot left out (`20 Dec. 2023`,
-- `Dec. 20, 2023`); a year-first dotted date (`2023.12.31`, the East Asian and Hungarian habit: one
-- reading only) with dashes; a time's `GMT` / `UTC` (`Sun, 24 Dec 2023 10:00:00 GMT`, RFC 2822's
-- other spelling of +0000) as the offset +0000
create or replace temp macro clv_file_date_text(t) as
    regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(clv_file_full_year(
                                      regexp_replace(regexp_replace(clv_file_zone_text(clv_file_clock_joined(trim(t))),
                                                                    '^(?i:mon|tue|wed|thu|fri|sat|sun)[a-z]*[.,]?\s+', ''),
                                                     '(^|\s)([0-9]{1,2})(?i:st|nd|rd|th)([\s,]|$)', '\1\2\3', 'g')),
                                  '^([0-9]{1,2})-([0-9]{1,2})-([0-9]{4})([ T].*)?$', '\1/\2/\3\4'),
                   '^([0-9]{1,2} )?([A-Za-z]{3})[.](\s)', '\1\2\3'),
                   '^([A-Za-z]{3,9}) ([0-9]{1,2}) ([0-9]{4})\b', '\1 \2, \3'),
                   '^([0-9]{4})[.]([0-9]{1,2})[.]([0-9]{1,2})\b', '\1-\2-\3'),
                   '([0-9]:[0-9]{2}(:[0-9]{2})?)\s*(GMT|UTC)$', '\1 +0000');
-- a number's text without its currency: symbols (`$ £ € ¥ ₹`, `R$` and other letters before a `$`) and
-- spaces left out (`$1,234.50`, `1 234,50 €`, a no-break, thin or figure space), then a currency code right before or
-- after the number (`USD 12.00`, `12.00 EUR`, upper case: clv_file_written_currency reads it, and the
-- row is checked against it like a currency column's value); Swiss apostrophe thousands (`1'234.50`)
-- dropped; an accountant's negative in parentheses or with a trailing minus (`($20.00)`, `20.00-`) signed;
-- a typographic minus sign (U+2212, `−12.00`: Numbers, LibreOffice, typeset reports) is a minus; an
-- apostrophe before a number (`'-12.00`: exporters that guard a cell starting with - + = @ against
-- spreadsheet formula injection, WooCommerce's, and Excel's text marker) is left out
create or replace temp macro clv_file_unguarded(t) as regexp_replace(trim(t), '^''([-+(0-9.−])', '\1');
create or replace temp macro clv_file_unit_free(t) as
    regexp_replace(regexp_replace(replace(clv_file_unguarded(t), '−', '-'), '[A-Z]{1,2}[$]', '$', 'g'),
                   '[$£€¥₹[:space:]\x{00A0}\x{2007}\x{2009}\x{202F}]', '', 'g');
create or replace temp macro clv_file_written_currency(t) as nullif(coalesce(
    nullif(regexp_extract(clv_file_unit_free(t), '^[(-]?([A-Z]{3})[-(]?[0-9.]', 1), ''),
    regexp_extract(clv_file_unit_free(t), '[0-9.)-]([A-Z]{3})[)]?$', 1)), '');
create or replace temp macro clv_file_bare_number(t) as
    regexp_replace(regexp_replace(regexp_replace(
        regexp_replace(regexp_replace(clv_file_unit_free(t), '^([(-]?)[A-Z]{3}([-(]?[0-9.])', '\1\2'),
                       '([0-9.)-])[A-Z]{3}([)]?)$', '\1\2'),
        '^([-(]?[0-9]{1,3})[''’]([0-9]{3})(?:[''’]([0-9]{3}))?(?:[''’]([0-9]{3}))?([.,][0-9]*)?([)-]?)$',
        '\1\2\3\4\5\6'),
                                  '^[(]([0-9][0-9.,]*)[)]$', '-\1'),
                   '^([0-9][0-9.,]*)-$', '-\1');
-- text of a number: a file's decimal comma read as such (`6,95`, `1.234,50`), the thousands commas
-- of a decimal-point file dropped (`1,234.50`); anything else stays as written and fails to parse
create or replace temp macro clv_file_number_text(t, separator) as nullif(
    case when separator = ',' then replace(replace(clv_file_bare_number(t), '.', ''), ',', '.')
         when regexp_matches(clv_file_bare_number(t), '^[-+]?[0-9]{1,3}(,[0-9]{3})+([.][0-9]*)?$')
             then replace(clv_file_bare_number(t), ',', '')
         else clv_file_bare_number(t) end, '');
-- a Unix time: 10 digits of seconds or 13 of milliseconds since 1970-01-01 UTC
create or replace temp macro clv_file_unix_time(t) as regexp_matches(t, '^[0-9]{10}$|^[0-9]{13}$');
-- a timestamp as text: `2024-03-10 21:15:00 -0500`, ISO with `T`, `Z` or `-05:00`, or without an offset
create or replace temp macro clv_file_wall_clock(t) as
    try_cast(regexp_replace(trim(t), '\s*(Z|[+-][0-9]{2}:?[0-9]{2})$', '') as timestamp);

create or replace table staging_build._file_rows as
with heads as (
    -- the head row of each order of a Shopify orders export: the first one carrying order columns
    select
        file_name,
        trim(order_id) as head_name,
        customer_id as head_customer,
        order_date as head_date,
        amount as head_amount,
        currency as head_currency,
        coalesce(nullif(trim(country), ''), nullif(trim(layout_fields ->> 'shipping_country'), '')) as head_country,
        layout_fields as head_fields
    from raw.file_transactions
    where file_format = 'shopify_orders' and parse_error is null and nullif(trim(order_id), '') is not null
      and coalesce(nullif(trim(layout_fields ->> 'financial_status'), ''), nullif(trim(order_date), ''),
                   nullif(trim(amount), '')) is not null
    qualify row_number() over (partition by file_name, trim(order_id) order by sheet_name, row_number) = 1
),
table_emails as (
    -- the customer of each e-mail of a Shopify orders table's file (its orders' highest customer id): a
    -- guest checkout of a known customer's e-mail is theirs, as the API path joins it. Grouped here
    -- over the table's rows only, not a window over every file row (1M order-level rows: +2.5 s)
    select file_name, lower(trim(layout_fields ->> 'email')) as email_key,
           max(clv_file_customer(clv_file_table_customer(customer_id))) as email_customer
    from raw.file_transactions
    where file_format = 'shopify_table' and nullif(trim(layout_fields ->> 'email'), '') is not null
    group by all
),
filled as (
    select
        f.* replace (
            case when f.file_format = 'shopify_orders' then h.head_customer else clv_file_cell(f.customer_id) end
                as customer_id,
            case when f.file_format = 'shopify_orders' then h.head_date else clv_file_cell(f.order_date) end
                as order_date,
            case when f.file_format = 'shopify_orders' then h.head_amount else clv_file_cell(f.amount) end as amount,
            case when f.file_format = 'shopify_orders' then coalesce(h.head_currency, f.currency)
                 else clv_file_cell(f.currency) end as currency,
            case when f.file_format = 'shopify_orders' then h.head_country else clv_file_cell(f.country) end as country,
            clv_file_cell(f.order_id) as order_id,
            clv_file_cell(f.product_id) as product_id,
            clv_file_cell(f.quantity) as quantity,
            clv_file_cell(f.unit_price) as unit_price
        ),
        f.file_format = 'shopify_orders' as is_shopify,
        h.head_name is not null as has_head,
        h.head_fields,
        nullif(trim(clv_file_cell(f.order_id)), '') as order_name_text,
        nullif(trim(clv_file_cell(f.product_id)), '') as sku_text,
        e.email_customer
    from raw.file_transactions as f
    left join heads as h on f.file_format = 'shopify_orders' and h.file_name = f.file_name
                        and h.head_name = trim(f.order_id)
    left join table_emails as e on f.file_format = 'shopify_table' and e.file_name = f.file_name
                               and e.email_key = lower(trim(f.layout_fields ->> 'email'))
),
keyed as (
    select
        f.*,
        case
            when is_shopify then coalesce(
                nullif(regexp_extract(trim(head_fields ->> 'id'), '^([0-9]+)(\.0+)?$', 1), ''),
                order_name_text)
            -- counted per sheet: the same row on two sheets of a workbook is one order (a duplicate row below)
            when f.file_format = 'transactions' then clv_file_row_key(f.customer_id, f.order_date, f.amount, row_number()
                over (partition by f.file_name, f.sheet_name, clv_file_customer(f.customer_id), trim(f.order_date),
                                   trim(f.amount)
                      order by f.row_number))
            else clv_file_id(f.order_id)
        end as order_key,
        -- which rows are the same order when files overlap: the Name in Shopify's export
        case when is_shopify then 'name:' || order_name_text
             when f.file_format = 'transactions' then clv_file_row_key(f.customer_id, f.order_date, f.amount, row_number()
                 over (partition by f.file_name, f.sheet_name, clv_file_customer(f.customer_id), trim(f.order_date),
                                    trim(f.amount)
                       order by f.row_number))
             else clv_file_id(f.order_id) end as resend_key,
        case when is_shopify then nullif(lower(trim(f.customer_id)), '')
             when f.file_format = 'shopify_table' then coalesce(
                 clv_file_customer(clv_file_table_customer(f.customer_id)), f.email_customer,
                 clv_file_customer(lower(trim(f.layout_fields ->> 'email'))))
             else clv_file_customer(f.customer_id) end as customer_key,
        -- a totals or subtotal row's label: in its order id or date cell, or in its customer cell when
        -- it has no order id (a total row has none; with one the row is an order of a customer so named)
        case when is_shopify then null
             when clv_file_totals_label(f.order_id) then trim(f.order_id)
             when clv_file_totals_label(f.order_date) then trim(f.order_date)
             when clv_file_totals_label(f.customer_id) and order_name_text is null then trim(f.customer_id)
        end as totals_label,
        not is_shopify and clv_file_id_lost_digits(f.order_id) as order_id_lost_digits,
        not is_shopify and clv_file_id_lost_digits(f.customer_id) as customer_id_lost_digits,
        -- a Shopify line without a SKU is its product by name
        case when is_shopify then coalesce(sku_text, nullif(trim(f.description), ''))
             else nullif(regexp_replace(trim(f.product_id), '^([0-9]+)\.0+$', '\1'), '') end as product_key,
        nullif(upper(trim(f.currency)), '') as currency_code,
        -- a currency code written with the amount or price (`USD 12.00`): the row's currency as much as
        -- its currency column (or the store's file_currency) is
        coalesce(clv_file_written_currency(f.amount), clv_file_written_currency(f.unit_price),
                 clv_file_written_currency(f.layout_fields ->> 'refunded_amount')) as written_currency,
        -- a Shopify orders table's order without a processing time: its creation time, as the API path
        clv_file_date_text(case when f.file_format = 'shopify_table'
                                then coalesce(nullif(trim(f.order_date), ''), f.layout_fields ->> 'created_at')
                                else f.order_date end) as date_text,
        -- an offset after a time of day (`21:15:00-05:00`, `T21:15-05`, `T21:15Z`, `10:00:00 GMT` as
        -- date_text writes it): not the year of `10-Mar-2024`
        regexp_matches(date_text, '[0-9]:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?\s*(Z|[+-][0-9]{2}(:?[0-9]{2})?)$')
            -- or a zone's name (`21:15:00 EST`, `21:15 America/Chicago`), not a 12-hour clock's AM / PM:
            -- read as the wall clock it was (the zone dropped), a PST evening was the next day's in
            -- New York; a name no cast knows makes the date unparseable, not silently shifted
            or (regexp_matches(date_text, '[0-9]:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?\s+[A-Za-z][A-Za-z_]*(/[A-Za-z_]+)*$')
                and not regexp_matches(date_text, '[0-9]\s*(?i:[ap]\.?m\.?)$'))
            -- a Unix time (read below) is an instant too
            or clv_file_unix_time(date_text) as has_offset,
        -- the order-date header says its times are UTC (Stripe's `Created (UTC)`; file_import.py)
        coalesce(not is_shopify and f.layout_fields ->> 'order_date_zone' = 'UTC', false) as date_in_utc,
        -- `'-2`: a quantity with a formula-injection guard's apostrophe
        nullif(clv_file_unguarded(f.quantity), '') as qty_text,
        clv_file_number_text(f.unit_price, f.decimal_separator) as price_text,
        clv_file_number_text(f.amount, f.decimal_separator) as amount_text,
        -- Shopify's order columns (NULL for other layouts) and the line's own discount
        upper(nullif(trim(case when is_shopify then head_fields ->> 'financial_status'
                               when f.file_format = 'shopify_table' then f.layout_fields ->> 'financial_status' end),
                     '')) as financial_status,
        nullif(trim(case when is_shopify then head_fields ->> 'cancelled_at'
                         when f.file_format = 'shopify_table' then f.layout_fields ->> 'cancelled_at' end),
               '') as cancelled_text,
        -- Airbyte's refunds of a Shopify orders table, each with its own time (05 books them on their
        -- days) and the subtotals of its refunded line items (a row's refunded amount is their sum)
        case when f.file_format = 'shopify_table' and starts_with(ltrim(coalesce(f.layout_fields ->> 'refunds', '')), '[')
                  and json_valid(f.layout_fields ->> 'refunds')
             then list_transform(
                 json_transform(f.layout_fields ->> 'refunds',
                                '[{"id": "VARCHAR", "created_at": "VARCHAR", "refund_line_items": [{"subtotal": "VARCHAR"}]}]'),
                 lambda e, position: {'refund_id': e.id, 'position': position, 'created_at': e.created_at,
                            'amount': coalesce(list_sum(list_transform(e.refund_line_items,
                                                                       lambda i: try_cast(i.subtotal as decimal(38, 2)))), 0)})
        end as refund_events,
        -- the money given back: Shopify's `Refunded Amount` (its order's head row), or an order-level or
        -- transactions file's refunded-amount column (file_import.REFUNDED_HEADERS), on the row itself
        clv_file_number_text(case when is_shopify then head_fields ->> 'refunded_amount'
                                  -- `refunded` is Shopify's status of a fully refunded order, whatever its
                                  -- refunded lines add up to: dbt's refund_subtotal and Airbyte's refunded
                                  -- lines miss a refund of an amount without lines, and the connector's own
                                  -- table has no refunds at all
                                  when f.file_format = 'shopify_table'
                                       and upper(trim(f.layout_fields ->> 'financial_status')) = 'REFUNDED'
                                      then f.amount
                                  -- Airbyte's refunds: the subtotals of their refunded line items
                                  when f.file_format = 'shopify_table'
                                       and list_contains(json_keys(f.layout_fields), 'refunds')
                                       and not list_contains(json_keys(f.layout_fields), 'refunded_amount')
                                      then case when coalesce(trim(f.layout_fields ->> 'refunds'), '') in ('', '[]') then '0'
                                                when json_valid(f.layout_fields ->> 'refunds') then coalesce(cast(
                                                    list_sum(list_transform(refund_events, lambda e: e.amount))
                                                    as varchar), '0')
                                                else f.layout_fields ->> 'refunds' end
                                  when f.file_format in ('generic', 'transactions', 'shopify_table')
                                      then f.layout_fields ->> 'refunded_amount' end,
                             f.decimal_separator) as refunded_text,
        clv_file_number_text(head_fields ->> 'discount_amount', f.decimal_separator) as discount_text,
        clv_file_number_text(head_fields ->> 'shipping', f.decimal_separator) as shipping_text,
        clv_file_number_text(case when is_shopify then head_fields ->> 'taxes'
                                  when f.file_format = 'shopify_table' then f.layout_fields ->> 'taxes' end,
                             f.decimal_separator) as taxes_text,
        -- a Shopify orders table's flags (NULL for other layouts): true as a warehouse writes it
        case when f.file_format = 'shopify_table'
             then clv_file_flag(f.layout_fields ->> 'taxes_included')
        end as taxes_included,
        f.file_format = 'shopify_table'
            and clv_file_flag(f.layout_fields ->> 'test') as is_test_order,
        f.file_format = 'shopify_table'
            and (clv_file_flag(f.layout_fields ->> 'deleted')
                 or nullif(trim(f.layout_fields ->> 'deleted_at'), '') is not null) as is_deleted_row,
        clv_file_number_text(head_fields ->> 'duties', f.decimal_separator) as duties_text,
        clv_file_number_text(head_fields ->> 'total', f.decimal_separator) as total_text,
        clv_file_number_text(f.layout_fields ->> 'line_discount', f.decimal_separator) as line_discount_text,
        -- the e-mail marketing consent of the customer as Shopify held it when the file was exported
        case when is_shopify then lower(nullif(trim(head_fields ->> 'accepts_marketing'), ''))
             -- a Shopify orders table's consent flag is a boolean as the warehouse writes it
             when f.file_format = 'shopify_table' then case
                 when clv_file_flag(f.layout_fields ->> 'accepts_marketing') then 'yes'
                 when lower(trim(f.layout_fields ->> 'accepts_marketing')) in ('false', 'f', '0', 'no') then 'no' end
        end as accepts_marketing,
        -- the order status column of another layout's export (file_import.STATUS_HEADERS)
        case when not is_shopify then lower(nullif(trim(f.layout_fields ->> 'status'), '')) end as order_status
    from filled as f
),
file_slash_dates as (
    -- which way a file writes d/m/y dates: a first field above 12 can only be a day (day-first,
    -- the European and British habit), a second field above 12 only a day (month-first, the US
    -- habit and the UCI files). A file with both is contradictory: its rows that could be either
    -- are rejected.
    select
        file_name,
        coalesce(bool_or(try_cast(regexp_extract(date_text, '^([0-9]{1,2})/([0-9]{1,2})/', 1) as integer) > 12), false)
            as day_first_seen,
        coalesce(bool_or(try_cast(regexp_extract(date_text, '^([0-9]{1,2})/([0-9]{1,2})/', 2) as integer) > 12), false)
            as month_first_seen
    from keyed
    where not is_shopify
    group by file_name
),
slash_dates as (
    -- a file with only fields up to 12 says nothing by itself (a British store's export of 1 to 7
    -- December was read as 12 January to 12 July): it reads as store.toml [files] date_order says,
    -- and with "auto" takes the store's habit when the store's other files show one way only, else
    -- month-first, as documented
    select
        f.file_name,
        f.day_first_seen or (not f.month_first_seen and ($file_date_order = 'day-first'
            or ($file_date_order = 'auto' and store.day_first and not store.month_first))) as day_first_seen,
        f.month_first_seen
    from file_slash_dates as f,
         (select bool_or(day_first_seen) as day_first, bool_or(month_first_seen) as month_first
          from file_slash_dates) as store
),
typed as (
    select
        k.*,
        s.day_first_seen and s.month_first_seen
            and try_cast(regexp_extract(k.date_text, '^([0-9]{1,2})/([0-9]{1,2})/', 1) as integer) <= 12
            and try_cast(regexp_extract(k.date_text, '^([0-9]{1,2})/([0-9]{1,2})/', 2) as integer) <= 12
            as date_ambiguous,
        case
            -- Shopify writes its timestamps in the shop's time zone: the written wall clock is the shop's
            when is_shopify then coalesce(clv_file_wall_clock(date_text), try_strptime(date_text, '%m/%d/%Y %H:%M'),
                                          try_strptime(date_text, '%m/%d/%Y %H:%M:%S'))
            -- seconds or milliseconds since 1970-01-01 UTC, a database's or an API's export (`1710105300`,
            -- `1710105300000`): an instant, converted like a time with an offset
            when clv_file_unix_time(date_text) then timezone($store_timezone, to_timestamp(
                cast(date_text as bigint) / case when length(date_text) = 13 then 1000 else 1 end))
            -- an Excel date serial written as text (`45291`, `45291.5`: a CSV saved from a sheet whose date
            -- column is formatted General): days since 1899-12-30 (Excel's 1900 date system), a wall clock
            -- like the workbook cells file_import.py reads
            when regexp_matches(date_text, '^[0-9]{5}([.][0-9]+)?$') then timestamp '1899-12-30'
                + to_seconds(cast(round(cast(date_text as double) * 86400) as bigint))
            -- `2024-03-10 21:15:00 -0500` (a space before the offset: Shopify's and Ruby's timestamps) reads
            -- as `…21:15:00-0500`; a cast of it as written failed, and the row was an unparseable date
            -- `24 Dec 2023 10:00:00 +0000` (RFC 2822, e-mail and some APIs' dates, weekday and GMT read
            -- above) is no cast's text: read with its offset (%z)
            -- a slash date with an offset (`03/10/2024 21:15:00 +05:30`, `10/03/2024 21:15 GMT+1`) in
            -- the file's own day order, as the rule below reads one without
            when has_offset then timezone($store_timezone, coalesce(try_cast(
                regexp_replace(date_text, '\s+(Z|[+-][0-9]{2}(:?[0-9]{2})?)$', '\1') as timestamptz),
                try_strptime(date_text, ['%d %b %Y %H:%M:%S %z', '%d %b %Y %H:%M %z', '%d %B %Y %H:%M:%S %z',
                                         '%d %B %Y %H:%M %z', '%b %d, %Y %H:%M:%S %z', '%b %d, %Y %H:%M %z',
                                         '%B %d, %Y %H:%M:%S %z', '%B %d, %Y %H:%M %z']),
                case when clv_file_reads_day_first(date_text, s.day_first_seen, s.month_first_seen)
                     then try_strptime(date_text, ['%d/%m/%Y %H:%M:%S %z', '%d/%m/%Y %H:%M %z'])
                     else try_strptime(date_text, ['%m/%d/%Y %H:%M:%S %z', '%m/%d/%Y %H:%M %z']) end))
            when clv_file_reads_day_first(date_text, s.day_first_seen, s.month_first_seen)
                then coalesce(
                    clv_file_twelve_hour(date_text, true),
                    try_strptime(date_text, '%d/%m/%Y %H:%M'),
                    try_strptime(date_text, '%d/%m/%Y %H:%M:%S'),
                    try_strptime(date_text, '%d/%m/%Y'),
                    try_cast(date_text as timestamp),
                    try_strptime(date_text, '%d.%m.%Y %H:%M'),
                    try_strptime(date_text, '%d.%m.%Y'),
                    clv_file_unambiguous_date(date_text))
            else coalesce(
                clv_file_twelve_hour(date_text, false),
                try_cast(date_text as timestamp),
                try_strptime(date_text, '%m/%d/%Y %H:%M'),
                try_strptime(date_text, '%m/%d/%Y %H:%M:%S'),
                try_strptime(date_text, '%m/%d/%Y'),
                try_strptime(date_text, '%d.%m.%Y %H:%M'),
                try_strptime(date_text, '%d.%m.%Y'),
                clv_file_unambiguous_date(date_text)
            )
        end as order_ts,
        case when file_format = 'shopify_table' and not regexp_matches(cancelled_text, '(Z|[+-][0-9]{2}:?[0-9]{2})$')
             then timezone($store_timezone, timezone('UTC', clv_file_wall_clock(cancelled_text)))
             else clv_file_wall_clock(cancelled_text) end as cancelled_ts,
        try_cast(qty_text as double) as qty_double,
        try_cast(price_text as decimal(38, 2)) as price_wide,
        try_cast(amount_text as decimal(38, 2)) as amount_wide,
        try_cast(price_text as double) as price_double,
        try_cast(amount_text as double) as amount_double,
        coalesce(try_cast(refunded_text as decimal(38, 2)), 0) as refunded_wide,
        coalesce(try_cast(discount_text as decimal(38, 2)), 0) as discount_wide,
        coalesce(try_cast(shipping_text as decimal(38, 2)), 0) as shipping_wide,
        coalesce(try_cast(taxes_text as decimal(38, 2)), 0) as taxes_wide,
        coalesce(try_cast(duties_text as decimal(38, 2)), 0) as duties_wide,
        try_cast(total_text as decimal(38, 2)) as total_wide,
        coalesce(try_cast(line_discount_text as decimal(38, 2)), 0) as line_discount_wide,
        -- the first order column written but not a number (blank is zero)
        case
            when refunded_text is not null and try_cast(refunded_text as decimal(38, 2)) is null
                then case when is_shopify then 'Refunded Amount: ' else 'refunded amount: ' end || refunded_text
            when discount_text is not null and try_cast(discount_text as decimal(38, 2)) is null
                then 'Discount Amount: ' || discount_text
            when shipping_text is not null and try_cast(shipping_text as decimal(38, 2)) is null
                then 'Shipping: ' || shipping_text
            when taxes_text is not null and try_cast(taxes_text as decimal(38, 2)) is null then 'Taxes: ' || taxes_text
            when duties_text is not null and try_cast(duties_text as decimal(38, 2)) is null then 'Duties: ' || duties_text
            when total_text is not null and try_cast(total_text as decimal(38, 2)) is null then 'Total: ' || total_text
            when line_discount_text is not null and try_cast(line_discount_text as decimal(38, 2)) is null
                then 'Lineitem discount: ' || line_discount_text
        end as bad_order_number,
        -- a return: a credit note of a line-level file, or a negative amount in an order-level or
        -- transactions file (its rows are refunds matched like credit notes, as the backtest's CSV
        -- reader nets them), never a negative purchase
        (file_format = 'online_retail' and upper(order_key) like 'C%')
            or (file_format in ('generic', 'transactions') and coalesce(amount_wide < 0, false)) as is_return,
        file_format = 'online_retail' and upper(order_key) like 'A%' as is_bad_debt,
        case
            when is_shopify then 'product'
            when upper(product_key) in ('POST', 'DOT', 'C2') then 'postage'
            when upper(product_key) in ('M', 'D', 'S', 'B', 'BANK CHARGES', 'AMAZONFEE', 'CRUK', 'PADS')
                then 'adjustment'
            else 'product'
        end as line_kind
    from keyed as k
    left join slash_dates as s using (file_name)
),
counted as (
    select
        -- a time written in UTC (the header says so) and without an offset: converted to the store's
        -- time zone like an offset `Z`, not taken as already in it
        * replace (case when date_in_utc and not has_offset then timezone($store_timezone, timezone('UTC', order_ts))
                        else order_ts end as order_ts),
        case
            when qty_text is null and not is_shopify then 1  -- an order-level file without quantities
            when try_cast(qty_text as integer) is not null then try_cast(qty_text as integer)
            -- "6.0" from a spreadsheet is 6; 2.5 or 3e9 are not a quantity
            when qty_double = floor(qty_double) and abs(qty_double) < 2147483648 then cast(qty_double as integer)
        end as qty,
        -- the first Shopify order column beyond the value limits
        case
            when abs(refunded_wide) > 999999999999.99
                then case when is_shopify then 'Refunded Amount ' else 'refunded amount ' end || refunded_text
            when abs(discount_wide) > 999999999999.99 then 'Discount Amount ' || discount_text
            when abs(shipping_wide) > 999999999999.99 then 'Shipping ' || shipping_text
            when abs(taxes_wide) > 999999999999.99 then 'Taxes ' || taxes_text
            when abs(duties_wide) > 999999999999.99 then 'Duties ' || duties_text
            when abs(total_wide) > 999999999999.99 then 'Total ' || total_text
            when abs(line_discount_wide) > 999999999999.99 then 'Lineitem discount ' || line_discount_text
        end as big_order_number
    from typed
),
valued as (
    select
        *,
        case when file_format = 'online_retail' then cast(qty as decimal(38, 2)) * price_wide
             -- a Shopify line: its units at their price, less the line's own discount
             when is_shopify then cast(qty as decimal(38, 2)) * price_wide - line_discount_wide
             -- a Shopify orders table's subtotal includes the taxes when the prices do (`taxes_included`)
             when taxes_included then greatest(amount_wide - taxes_wide, 0)
             else amount_wide end as value_wide
    from counted
),
judged as (
    select
        *,
        case
            when parse_error is not null then parse_error
            when totals_label is not null
                then 'totals row (' || totals_label || '): a sum of other rows, not an order'
            when order_key is null and file_format <> 'transactions' then 'missing order id'
            -- what the API path rejects as `test order`; a row the connector keeps after Shopify deleted
            -- the order (Fivetran's _fivetran_deleted, dbt's is_deleted) is no order any more
            when is_test_order then 'test order'
            when is_deleted_row then 'deleted in Shopify (the table marks the row deleted)'
            when order_id_lost_digits
                then 'order id in scientific notation has lost digits: ' || trim(order_id)
                     || ' (a spreadsheet wrote the id as a number: export the column as text)'
            when is_shopify and not has_head
                then 'no order row: no row of order ' || order_name_text || ' in the file has its Email, Financial '
                     || 'Status, Created at or Subtotal'
            when is_bad_debt then 'bad-debt adjustment (A invoice): not a customer transaction'
            -- a workbook's sheet that lists returned orders (Superstore's `Returns`; file_import.returns_list)
            when not is_shopify and nullif(layout_fields ->> 'returned_on_sheet', '') is not null
                then 'returned: the workbook''s sheet ''' || (layout_fields ->> 'returned_on_sheet')
                     || ''' lists the order as returned (not a purchase, as a refunded status)'
            when regexp_replace(order_status, '^wc-', '') in ('cancelled', 'canceled', 'failed', 'voided', 'void',
                                                               'declined', 'denied', 'expired', 'reversed',
                                                               'draft', 'trash', 'pending',
                                                               'pending payment', 'pending-payment', 'on-hold',
                                                               'on hold', 'refunded', 'checkout-draft',
                                                               'unavailable')
                then 'order status ' || order_status || ': not a purchase (cancelled, failed, unpaid or fully '
                     || 'refunded; a later export that shows it completed replaces this row)'
            when is_shopify and customer_key is null
                then 'missing customer id: guest order without an email (the export has no other customer id)'
            when customer_key is null then 'missing customer id'
            when customer_id_lost_digits
                then 'customer id in scientific notation has lost digits: ' || trim(customer_id)
                     || ' (a spreadsheet wrote the id as a number: export the column as text)'
            when currency_code is null then 'missing currency (no currency column value and no store file_currency)'
            when currency_code <> $shop_currency
                then 'currency ' || currency_code || ' differs from the store currency ' || $shop_currency
            when written_currency <> $shop_currency
                then 'currency ' || written_currency || ' differs from the store currency ' || $shop_currency
            when date_ambiguous
                then 'ambiguous order date: ' || order_date || ' (the file writes dates both day-first and month-first)'
            when order_ts is null then 'unparseable order date: ' || coalesce(order_date, 'empty')
            when qty is null and abs(qty_double) >= 2147483648 then 'quantity out of range: ' || quantity
            when qty is null then 'unparseable quantity: ' || coalesce(quantity, 'empty')
            when file_format not in ('generic', 'transactions', 'shopify_table') and price_double is null
                then 'unparseable price: ' || coalesce(unit_price, 'empty')
            when file_format not in ('generic', 'transactions', 'shopify_table') and (price_wide is null or abs(price_wide) > 999999999999.99)
                then 'price out of range: ' || unit_price
            when file_format <> 'online_retail' and amount_double is null
                then 'unparseable ' || case when is_shopify then 'Subtotal' else 'amount' end || ': '
                     || coalesce(amount, 'empty')
            when file_format <> 'online_retail' and (amount_wide is null or abs(amount_wide) > 999999999999.99)
                then 'amount out of range: ' || amount
            when bad_order_number is not null then 'unparseable ' || bad_order_number
            when big_order_number is not null then 'amount out of range: ' || big_order_number
            when cancelled_text is not null and cancelled_ts is null then 'unparseable Cancelled at: ' || cancelled_text
            when abs(value_wide) > 999999999999.99
                then 'amount out of range: ' || cast(cast(value_wide as decimal(38, 2)) as varchar)
            when qty < 0 and not is_return then 'negative quantity on a sale (not a return invoice)'
            when qty > 0 and is_return and file_format = 'online_retail' then 'positive quantity on a return invoice'
            when qty = 0 then 'zero quantity'
            when price_wide < 0 or (file_format <> 'online_retail' and amount_wide < 0 and not is_return)
                or least(refunded_wide, discount_wide, shipping_wide, taxes_wide, duties_wide, coalesce(total_wide, 0),
                         line_discount_wide) < 0
                then 'negative price or amount'
            when file_format = 'online_retail' and price_wide = 0
                then 'zero price (no revenue: a free or placeholder line)'
            when order_ts > timezone($store_timezone, now()) + interval 1 day then 'order date in the future'
            -- a placeholder (0001-01-01, Excel's 1899-12-30) or a mis-read date, not a purchase day: years
            -- before 1678 do not even fit the models' nanosecond timestamps (the run failed there)
            when order_ts < timestamp '1900-01-01'
                then 'order date before 1900: ' || order_date || ' (a placeholder or a mis-read date)'
        end as base_reason
    from valued
),
latest as (
    select
        *,
        -- only valid rows can replace an order: an invalid re-send keeps the earlier file's rows
        max(case when base_reason is null then ingested_at end) over (partition by resend_key)
            as latest_ingest_of_order,
        -- one order id on rows of several customers in one file (an id reused or a corrupt export):
        -- which customer the order is cannot be told, so none of them gets it
        min(case when base_reason is null then customer_key end) over (partition by resend_key, file_name)
            as first_customer_of_order,
        max(case when base_reason is null then customer_key end) over (partition by resend_key, file_name)
            as last_customer_of_order,
        row_number() over same_row as copy_number,
        first_value(sheet_name) over same_row as first_copy_sheet,
        first_value(row_number) over same_row as first_copy_row,
        -- the same row in every cell of its sheet, the columns not read too: rows told apart by a row
        -- id or a payment's sequence number (Superstore's Row ID, Olist's payment_sequential) are two
        row_number() over (partition by file_name, sheet_name, resend_key, cast(payload as varchar),
                                        cast(layout_fields as varchar) order by row_number) as cell_copy_number
    from judged
    -- the same row as read (order, customer, time, product, quantity, money, status), anywhere in the
    -- file: a workbook whose sheets repeat rows (Online Retail II's two sheets both hold 1-9 Dec 2010, a
    -- sheet of all orders beside the monthly ones) counts them once, whether a sheet writes an id as a
    -- number or as text. A transactions file's identical rows of one sheet have keys of their own.
    window same_row as (
        partition by file_name, resend_key, customer_key, order_ts, product_key, trim(description), qty,
                     price_wide, amount_wide, line_discount_wide, currency_code, cast(layout_fields as varchar)
        order by sheet_name, row_number
    )
),
judged_rows as (
    select
        * exclude (base_reason, first_customer_of_order, last_customer_of_order, first_copy_sheet, first_copy_row),
        case
            when base_reason is not null then base_reason
            when ingested_at < latest_ingest_of_order then 'order re-imported from a later file'
            when first_customer_of_order <> last_customer_of_order
                then 'order id used for several customers in the file (' || first_customer_of_order || ' to '
                     || last_customer_of_order || '): whose order it is cannot be told'
            when copy_number > 1 and first_copy_sheet is distinct from sheet_name
                then 'duplicate row: the same as sheet ''' || first_copy_sheet || ''' row ' || first_copy_row
                     || ' (a workbook''s sheets that repeat rows count them once)'
            -- a line without a product or a description cannot be told from another line of the same
            -- quantity and price (an Online Retail cut to CustomerID, InvoiceNo, InvoiceDate, Quantity,
            -- UnitPrice: 1 % of its lines), so it counts as a transactions file's row does
            when copy_number > 1 and cell_copy_number > 1
                 and (product_key is not null or nullif(trim(description), '') is not null)
                then 'duplicate row'
        end as row_reason
    from latest
),
order_totals as (
    -- an order-level file's refunds: its rows' refunded amounts, as its gross is its rows' amounts
    select order_key, sum(value_wide) as order_total,
           sum(case when not is_shopify then try_cast(refunded_text as decimal(38, 2)) end) as order_refunds
    from judged_rows
    where row_reason is null and not is_return
    group by order_key
)
select
    r.* exclude (row_reason, value_wide),
    cast(case when abs(r.value_wide) <= 999999999999.99 then r.value_wide end as decimal(18, 2)) as line_value,
    cast(case when abs(r.price_wide) <= 999999999999.99 then r.price_wide end as decimal(18, 2)) as price,
    -- what 05_staging_tables.sql reads per order (the same on every row of an order): the order's
    -- name and identity, and for Shopify's export its money columns and status (NULL otherwise)
    coalesce(r.order_name_text, r.order_key) as order_name,
    case when r.is_shopify then r.customer_key
         when r.file_format = 'shopify_table' then lower(nullif(trim(r.layout_fields ->> 'email'), '')) end
        as customer_email,
    case when r.is_shopify then r.sku_text else r.product_key end as line_sku,
    coalesce(r.cancelled_ts is not null, false) as order_cancelled,
    coalesce(r.financial_status in ('VOIDED', 'EXPIRED'), false) as order_unpaid,
    -- net sales before returns: the Subtotal (lines after discounts, without shipping), less the
    -- taxes when the prices include them (the Total then is Subtotal + Shipping + Duties)
    cast(case when r.is_shopify and abs(r.amount_wide) <= 999999999999.99 then greatest(
        r.amount_wide - case when r.taxes_wide > 0 and r.total_wide = r.amount_wide + r.shipping_wide + r.duties_wide
                             then r.taxes_wide else 0 end, 0) end as decimal(18, 2)) as order_sales,
    cast(case when r.is_shopify and abs(r.total_wide) <= 999999999999.99 then r.total_wide end as decimal(18, 2))
        as order_total,
    -- NULL without a refunded-amount column (a blank cell of one is 0)
    cast(case when r.is_shopify and abs(r.refunded_wide) <= 999999999999.99 then r.refunded_wide
              when not r.is_shopify and abs(t.order_refunds) <= 999999999999.99 then t.order_refunds end
         as decimal(18, 2)) as order_refunded,
    cast(case when r.is_shopify and abs(r.discount_wide) <= 999999999999.99 then r.discount_wide end
         as decimal(18, 2)) as order_discount,
    cast(case when r.is_shopify and abs(r.taxes_wide) <= 999999999999.99 then r.taxes_wide end
         as decimal(18, 2)) as order_tax,
    cast(case when r.is_shopify and abs(r.shipping_wide) <= 999999999999.99 then r.shipping_wide end
         as decimal(18, 2)) as order_shipping,
    cast(case when abs(r.line_discount_wide) <= 999999999999.99 then r.line_discount_wide else 0 end
         as decimal(18, 2)) as line_discount,
    case
        when r.row_reason is not null then r.row_reason
        when abs(t.order_total) > 999999999999.99
            then 'order total out of range: ' || cast(cast(t.order_total as decimal(38, 2)) as varchar)
        when abs(t.order_refunds) > 999999999999.99
            then 'amount out of range: refunded amount ' || cast(cast(t.order_refunds as decimal(38, 2)) as varchar)
    end as reject_reason
from judged_rows as r
left join order_totals as t on t.order_key = r.order_key and not r.is_return;

-- Credit-note lines matched to the sale they give money back for: the customer's latest sale of
-- the same stock code at or before the credit note; failing that, the customer's latest order at or
-- before it; failing that (a file of returns only, or a return older than the export) none: the
-- return is booked on its own date in staging.returns and reduces no order.
create or replace table staging_build._file_credits as
with credits as (
    select order_key as credit_key, customer_key, product_key, order_ts, file_name, sheet_name, row_number,
           abs(qty) as quantity, -line_value as amount
    from staging_build._file_rows
    where reject_reason is null and is_return
),
-- one sale per customer (and stock code) and timestamp: of several at the same moment (a file of
-- dates without times: every order of a day), the largest, then the highest order key, so the
-- ASOF match below is the same on every build (the backtest's CSV reader takes the day's largest too)
sale_products as (
    select customer_key, product_key, order_ts, first(order_key order by value desc, order_key desc) as order_key
    from (
        select order_key, customer_key, product_key, min(order_ts) as order_ts, sum(line_value) as value
        from staging_build._file_rows
        where reject_reason is null and not is_return and product_key is not null
        group by order_key, customer_key, product_key
    )
    group by customer_key, product_key, order_ts
),
sale_orders as (
    select customer_key, order_ts, first(order_key order by value desc, order_key desc) as order_key
    from (
        select order_key, customer_key, min(order_ts) as order_ts, sum(line_value) as value
        from staging_build._file_rows
        where reject_reason is null and not is_return
        group by order_key, customer_key
    )
    group by customer_key, order_ts
),
by_product as (
    select c.*, s.order_key as product_match
    from credits as c
    asof left join sale_products as s
        on c.customer_key = s.customer_key and c.product_key = s.product_key and c.order_ts >= s.order_ts
),
by_customer as (
    select b.*, o.order_key as customer_match
    from by_product as b
    asof left join sale_orders as o on b.customer_key = o.customer_key and b.order_ts >= o.order_ts
)
select
    * exclude (product_match, customer_match),
    coalesce(product_match, customer_match) as matched_order_key,
    case when product_match is not null then 'customer and stock code'
         when customer_match is not null then 'customer'
         else 'none' end as matched_by
from by_customer;
