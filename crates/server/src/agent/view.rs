//! How the agent command line shows what the storefront answered: aligned tables with a header
//! (coloured and bold only on a terminal; plain when piped), normalization warnings on stderr
//! where they cannot be missed, and generated private keys written to a file instead of the
//! screen.

use comfy_table::{presets, Attribute, Cell, Color, Table};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Minor units with their currency, through the domain's one formatter.
pub fn money(minor: &Value, currency: &Value) -> String {
    storefront_domain::money::display_minor_in(
        minor.as_i64().unwrap_or(0),
        currency.as_str().unwrap_or(""),
    )
}

/// A product's price in one line, as the storefront's own listings print it.
fn price(pricing: &Value) -> String {
    serde_json::from_value::<storefront_domain::catalog::Pricing>(pricing.clone())
        .map(|p| p.summary())
        .unwrap_or_else(|_| "-".into())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}

/// A table without borders, like other command-line tools print: a header, then one line a row.
fn table(header: &[&str], rows: Vec<Vec<Cell>>) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(
        header
            .iter()
            .map(|h| Cell::new(h.to_uppercase()).add_attribute(Attribute::Bold)),
    );
    for row in rows {
        table.add_row(row);
    }
    // No margin on the left, two spaces between columns.
    for column in table.column_iter_mut() {
        column.set_padding((0, 1));
    }
    table
}

/// A status, green when it is good news, red when bad, yellow while it waits.
fn status(value: &Value) -> Cell {
    let status = text(value);
    let colour = match status.as_str() {
        "fulfilled" | "active" | "paid" => Color::Green,
        "failed" | "canceled" | "terminated" | "expired" | "stopped" => Color::Red,
        _ => Color::Yellow,
    };
    Cell::new(status).fg(colour)
}

fn say_table(table: Table) {
    for line in table.lines() {
        // The borderless preset still draws its (blank) outer border.
        crate::say!("{}", line.strip_prefix(' ').unwrap_or(&line).trim_end());
    }
}

pub fn products(data: &Value) {
    let rows = data["products"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let available = if p["available"] == false {
                Cell::new("unavailable here").fg(Color::Red)
            } else {
                Cell::new("yes")
            };
            vec![
                Cell::new(text(&p["id"])),
                Cell::new(text(&p["category"])),
                Cell::new(text(&p["kind"])),
                Cell::new(price(&p["pricing"])),
                available,
                Cell::new(text(&p["name"])),
            ]
        })
        .collect();
    say_table(table(
        &["id", "category", "kind", "price", "available", "name"],
        rows,
    ));
}

pub fn orders(orders: &[Value]) {
    let rows = orders
        .iter()
        .map(|o| {
            vec![
                Cell::new(text(&o["id"])),
                Cell::new(text(&o["product_id"])),
                status(&o["status"]),
                Cell::new(money(&o["total_minor"], &o["currency"])),
                Cell::new(text(&o["service_id"])),
                Cell::new(text(&o["created_at"])),
            ]
        })
        .collect();
    say_table(table(
        &["id", "product", "status", "price", "service", "created"],
        rows,
    ));
}

pub fn services(services: &[Value]) {
    let rows = services
        .iter()
        .map(|s| {
            vec![
                Cell::new(text(&s["id"])),
                Cell::new(text(&s["product_id"])),
                status(&s["status"]),
                Cell::new(text(&s["server"]["image"])),
                Cell::new(match s["server"]["ssh_port"].as_u64() {
                    Some(port) => format!("{}:{port}", text(&s["server"]["host"])),
                    None => "-".into(),
                }),
                Cell::new(text(&s["expires_at"])),
            ]
        })
        .collect();
    say_table(table(
        &["id", "product", "status", "image", "ssh", "expires"],
        rows,
    ));
}

/// One order, as a short block: what it is, then what it delivered.
pub fn order(order: &Value) {
    orders(std::slice::from_ref(order));
    if let Some(result) = order.get("result").filter(|r| !r.is_null()) {
        crate::say!("result {result}");
    }
    if let Some(failure) = order.get("failure").filter(|f| !f.is_null()) {
        crate::say!("failure {}", text(&failure["message"]));
    }
}

/// The configuration warnings of a quote or an order, on stderr so a pipe does not hide them.
/// Answers whether there were any.
pub fn warnings(quote_or_order: &Value) -> bool {
    let warnings: Vec<&Value> = quote_or_order["configuration_warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    for w in &warnings {
        let field = w["field"].as_str().or(w["param"].as_str()).unwrap_or("");
        let message = text(&w["message"]);
        if field.is_empty() {
            eprintln!("warning: {message}");
        } else {
            eprintln!("warning: {field}: {message}");
        }
    }
    if !warnings.is_empty() {
        eprintln!(
            "warning: the price is for the configuration as normalized above, not as sent \
             (--strict refuses to buy in this case)"
        );
    }
    !warnings.is_empty()
}

/// Where a generated private key goes: a file (the default) or the screen.
pub enum KeyOutput {
    File(Option<PathBuf>),
    Print,
}

/// The SSH credentials: the command to connect, the host key, and the private key written to a
/// 0600 file (or printed with `--print-key`).
pub fn credentials(data: &Value, service_id: &str, key: &KeyOutput) -> Result<(), String> {
    let c = &data["credentials"];
    let user = c["username"].as_str().unwrap_or("root");
    let host = c["host"].as_str().unwrap_or("?");
    let port = &c["port"];
    crate::say!(
        "host key {}",
        c["host_key_fingerprint"].as_str().unwrap_or("?")
    );
    if let Some(line) = c["known_hosts_line"].as_str() {
        crate::say!("pin it: echo '{line}' >> ~/.ssh/known_hosts");
    }
    let Some(private_key) = c["private_key"].as_str() else {
        crate::say!("ssh {user}@{host} -p {port}");
        crate::say!("(the machine trusts the public key sent with the order)");
        return Ok(());
    };
    match key {
        KeyOutput::Print => {
            crate::say!("ssh {user}@{host} -p {port}");
            crate::say!("{private_key}");
        }
        KeyOutput::File(path) => {
            let path = path
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{service_id}.key")));
            write_private_key(&path, private_key)?;
            crate::say!("ssh -i {} {user}@{host} -p {port}", path.display());
            crate::say!(
                "private key saved to {} (mode 0600; --print-key shows it instead)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Writes a private key readable by its owner only; the file is created with mode 0600, so the
/// key is never readable by others, not even for a moment.
fn write_private_key(path: &Path, key: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write the private key to {}: {e}", path.display()))?;
    // An existing file keeps its mode on open: make sure it is private before writing.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    file.write_all(key.as_bytes())
        .map_err(|e| format!("cannot write the private key to {}: {e}", path.display()))
}

/// A service after an action: its id and state.
pub fn service(data: &Value) {
    services(std::slice::from_ref(&data["service"]));
}
