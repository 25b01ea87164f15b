//! Built-in functions whose result is computed from their arguments alone. Anything not
//! listed may read data on its own (`query_to_xml('select ...')`, `pg_read_file`, user
//! functions) and makes its value unknown. Names are unqualified or `pg_catalog.`.

pub(super) enum FunctionClass {
    /// The value carries no row values (`count`).
    Count,
    /// A pure transform of its arguments.
    Pure,
    Unknown,
}

pub(super) fn classify(name: &str) -> FunctionClass {
    if name == "count" {
        FunctionClass::Count
    } else if is_pure(name) {
        FunctionClass::Pure
    } else {
        FunctionClass::Unknown
    }
}

fn is_pure(name: &str) -> bool {
    matches!(
        name,
        // Strings.
        "lower" | "upper" | "initcap" | "trim" | "btrim" | "ltrim" | "rtrim" | "lpad" | "rpad"
            | "length" | "char_length" | "character_length" | "octet_length" | "bit_length"
            | "substr" | "substring" | "left" | "right" | "replace" | "translate" | "reverse"
            | "repeat" | "concat" | "concat_ws" | "format" | "split_part" | "strpos"
            | "position" | "overlay" | "md5" | "sha224" | "sha256" | "sha384" | "sha512"
            | "encode" | "decode" | "quote_ident" | "quote_literal" | "quote_nullable"
            | "ascii" | "chr" | "to_hex" | "regexp_replace" | "regexp_substr"
            | "regexp_match" | "regexp_matches" | "regexp_count" | "regexp_instr"
            | "regexp_like" | "regexp_split_to_array" | "string_to_array"
            | "array_to_string" | "starts_with" | "normalize" | "convert_from"
            | "convert_to" | "to_ascii" | "textcat" | "text" | "casefold" | "unistr"
            // Conditionals.
            | "coalesce" | "nullif" | "greatest" | "least" | "num_nulls" | "num_nonnulls"
            // Numbers.
            | "abs" | "ceil" | "ceiling" | "floor" | "round" | "trunc" | "sign" | "sqrt"
            | "cbrt" | "power" | "pow" | "exp" | "ln" | "log" | "log10" | "mod" | "div"
            | "degrees" | "radians" | "sin" | "cos" | "tan" | "asin" | "acos" | "atan"
            | "atan2" | "width_bucket" | "scale" | "gcd" | "lcm" | "random" | "pi"
            | "to_char" | "to_number" | "numeric"
            // Dates and times.
            | "now" | "current_date" | "current_time" | "current_timestamp" | "localtime"
            | "localtimestamp" | "clock_timestamp" | "statement_timestamp"
            | "transaction_timestamp" | "date_trunc" | "date_part" | "extract" | "age"
            | "to_date" | "to_timestamp" | "make_date" | "make_time" | "make_timestamp"
            | "make_timestamptz" | "make_interval" | "date_bin" | "justify_days"
            | "justify_hours" | "justify_interval" | "isfinite" | "timezone"
            // JSON and rows.
            | "row" | "to_json" | "to_jsonb" | "row_to_json" | "array_to_json"
            | "json_build_object" | "jsonb_build_object" | "json_build_array"
            | "jsonb_build_array" | "json_object" | "jsonb_object" | "json_agg" | "jsonb_agg"
            | "json_object_agg" | "jsonb_object_agg" | "jsonb_set" | "jsonb_insert"
            | "jsonb_strip_nulls" | "json_strip_nulls" | "jsonb_pretty" | "json_extract_path"
            | "json_extract_path_text" | "jsonb_extract_path" | "jsonb_extract_path_text"
            | "json_array_length" | "jsonb_array_length" | "json_typeof" | "jsonb_typeof"
            | "jsonb_path_query_first" | "jsonb_path_query_array" | "jsonb_path_exists"
            | "jsonb_path_match" | "json_populate_record" | "jsonb_populate_record"
            // Aggregates.
            | "min" | "max" | "sum" | "avg" | "array_agg" | "string_agg" | "bool_and"
            | "bool_or" | "every" | "bit_and" | "bit_or" | "bit_xor" | "stddev"
            | "stddev_pop" | "stddev_samp" | "variance" | "var_pop" | "var_samp" | "mode"
            | "percentile_cont" | "percentile_disc" | "corr" | "covar_pop" | "covar_samp"
            | "any_value" | "xmlagg" | "grouping"
            // Window functions.
            | "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" | "ntile"
            | "lag" | "lead" | "first_value" | "last_value" | "nth_value"
            // Arrays.
            | "array_length" | "array_upper" | "array_lower" | "cardinality" | "array_append"
            | "array_prepend" | "array_cat" | "array_remove" | "array_replace"
            | "array_position" | "array_positions" | "array_dims" | "array_ndims"
            | "array_fill" | "trim_array" | "unnest" | "array"
            // Values that are not row data. A setting's value is masked by the session once
            // any setting may hold classified data (see postgres/settings.rs).
            | "current_setting" | "current_user" | "session_user" | "user" | "current_role" | "current_catalog"
            | "current_schema" | "system_user" | "gen_random_uuid" | "pg_typeof"
            // Catalog metadata (psql's `\d` and friends): names, types, owners, sizes and
            // definitions of objects, not row data.
            | "format_type" | "pg_get_userbyid" | "pg_table_is_visible" | "pg_type_is_visible"
            | "pg_function_is_visible" | "pg_opclass_is_visible" | "pg_collation_is_visible"
            | "pg_conversion_is_visible" | "pg_ts_config_is_visible" | "pg_encoding_to_char"
            | "pg_get_indexdef" | "pg_get_constraintdef" | "pg_get_expr" | "pg_get_triggerdef"
            | "pg_get_viewdef" | "pg_get_ruledef" | "pg_get_functiondef"
            | "pg_get_function_arguments" | "pg_get_function_result"
            | "pg_get_function_identity_arguments" | "pg_get_partkeydef"
            | "pg_get_statisticsobjdef_columns" | "obj_description" | "col_description"
            | "shobj_description" | "pg_relation_size" | "pg_total_relation_size"
            | "pg_table_size" | "pg_indexes_size" | "pg_database_size" | "pg_size_pretty"
            | "pg_tablespace_location" | "pg_relation_is_publishable" | "has_table_privilege"
            | "has_column_privilege" | "has_schema_privilege" | "has_database_privilege"
            | "has_function_privilege" | "pg_has_role" | "pg_column_size"
            // Large objects: descriptors, positions, counts and OIDs, never their contents
            // (`loread` and `lo_get` return contents and stay unknown).
            | "lo_open" | "lo_close" | "lo_creat" | "lo_create" | "lo_lseek" | "lo_lseek64"
            | "lo_tell" | "lo_tell64" | "lo_truncate" | "lo_truncate64" | "lo_unlink"
            | "lowrite" | "lo_put" | "lo_from_bytea" | "lo_import" | "lo_export"
    )
}

/// Built-ins that read or change no session settings and run no user code, beyond the pure
/// ones: anything else called may be user code (which can `set_config` whatever it reads).
fn is_known_builtin(name: &str) -> bool {
    matches!(
        name,
        "set_config"
            | "count"
            | "version"
            | "pg_backend_pid"
            | "nextval"
            | "currval"
            | "setval"
            | "lastval"
            | "txid_current"
            | "pg_current_xact_id"
            | "pg_sleep"
            | "pg_notify"
            | "generate_series"
            | "generate_subscripts"
            | "regexp_split_to_table"
            | "string_to_table"
            | "json_array_elements"
            | "json_array_elements_text"
            | "jsonb_array_elements"
            | "jsonb_array_elements_text"
            | "json_object_keys"
            | "jsonb_object_keys"
            | "json_each"
            | "json_each_text"
            | "jsonb_each"
            | "jsonb_each_text"
            | "loread"
            | "lo_get"
            | "pg_is_in_recovery"
    )
}

/// Whether a call (lower-cased, qualified as written) may run code Tollgate cannot read:
/// not a built-in it knows, in any schema.
pub fn may_run_user_code(name: &str) -> bool {
    let unqualified = match name.split_once('.') {
        Some(("pg_catalog", rest)) => rest,
        Some(_) => return true,
        None => name,
    };
    !is_pure(unqualified) && !is_known_builtin(unqualified)
}

/// `CURRENT_ROLE` and friends, which the parser reads as plain identifiers. They are reserved
/// words in PostgreSQL, so unquoted they are never column names.
pub(super) fn is_special_value(word: &str) -> bool {
    const WORDS: [&str; 12] = [
        "current_role",
        "current_schema",
        "current_catalog",
        "current_user",
        "session_user",
        "system_user",
        "user",
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
    ];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// Columns of a known set-returning built-in used in FROM.
pub(super) enum Shape {
    /// One column, named after the alias or the function.
    Scalar,
    /// `unnest(a, b, ...)`: one column per argument.
    PerArgument,
    Named(&'static [&'static str]),
}

impl Shape {
    pub fn columns(&self, scalar: &str, args: usize) -> Vec<String> {
        match self {
            Shape::Scalar => vec![scalar.to_owned()],
            Shape::PerArgument if args > 1 => vec!["unnest".to_owned(); args],
            Shape::PerArgument => vec![scalar.to_owned()],
            Shape::Named(names) => names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }
}

pub(super) fn table_shape(name: &str) -> Option<Shape> {
    Some(match name {
        "unnest" => Shape::PerArgument,
        "generate_series"
        | "generate_subscripts"
        | "regexp_split_to_table"
        | "string_to_table"
        | "regexp_matches"
        | "json_array_elements"
        | "json_array_elements_text"
        | "jsonb_array_elements"
        | "jsonb_array_elements_text"
        | "json_object_keys"
        | "jsonb_object_keys" => Shape::Scalar,
        "json_each" | "json_each_text" | "jsonb_each" | "jsonb_each_text" => {
            Shape::Named(&["key", "value"])
        }
        _ => return None,
    })
}
