//! Parse and validate a connector configuration, then print what it resolved to.
#![allow(clippy::print_stdout)]

use connector::ConnectorConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/examples/elasticsearch-source.toml".into());
    let config = ConnectorConfig::from_file(path.as_ref())?;
    // Checked once; what the values derive is resolved with it.
    let plugin = config.plugin_config.validate()?;
    println!("index:      {}", plugin.index);
    println!("query:      {}", plugin.query());
    println!("batch_size: {}", plugin.batch_size);
    println!("state:      {:?}", plugin.state_settings()); // credentials redacted
    Ok(())
}
