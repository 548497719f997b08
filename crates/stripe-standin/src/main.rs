//! `stripe-standin`: runs the Stripe stand-in so card and MPP payments can be tried locally
//! without a Stripe account. Point the storefront's `stripe_api_base` at the printed URL.

use clap::Parser;

#[derive(Parser)]
#[command(about = "A local stand-in for the Stripe endpoints the storefront uses")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:12111")]
    listen: std::net::SocketAddr,
    /// The secret key callers must present.
    #[arg(long, default_value = "sk_test_standin")]
    secret_key: String,
    /// The secret webhook events are signed with.
    #[arg(long, default_value = "whsec_standin")]
    webhook_secret: String,
    /// Where to deliver webhook events, e.g. http://127.0.0.1:8080/api/v1/webhooks/stripe.
    #[arg(long)]
    webhook_url: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let standin = stripe_standin::Standin::start(
        args.listen,
        stripe_standin::Config {
            secret_key: args.secret_key,
            webhook_secret: args.webhook_secret,
            webhook_url: args.webhook_url,
        },
    )
    .await?;
    println!("stripe stand-in listening on {}", standin.base_url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
