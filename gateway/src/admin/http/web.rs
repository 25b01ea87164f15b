//! The approver web page: one HTML file, its script and its style, built into the binary.
//! The script renders everything an agent wrote (statements, command lines) as text, never
//! as markup, and the policy the server sends forbids any other script.

pub const INDEX: &str = include_str!("web/index.html");
pub const SCRIPT: &str = include_str!("web/app.js");
pub const STYLE: &str = include_str!("web/app.css");
