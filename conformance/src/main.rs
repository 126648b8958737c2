//! `keelson-conformance`: conformance-style tests against any cluster given by a
//! kubeconfig. Each test carries the codename of the Kubernetes conformance test it
//! mirrors; the run prints one line per test, the totals, and optionally JUnit XML.

use keelson_conformance::{framework, junit, runner, tests};

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "keelson-conformance",
    about = "Run conformance-style tests against a cluster"
)]
struct Args {
    /// The cluster to test (its current context is used).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Run only tests whose codename contains one of these substrings.
    #[arg(long)]
    focus: Vec<String>,
    /// Leave out tests whose codename contains one of these substrings.
    #[arg(long)]
    skip: Vec<String>,
    /// Print the selected codenames and exit.
    #[arg(long)]
    list: bool,
    /// How many tests run at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Seconds one test may take before it fails.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// A busybox-like image (sh, sleep, httpd, wget, nc, cat) the cluster can run.
    #[arg(long, default_value = "keelson.local/busybox:1")]
    image: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let selected = runner::select(tests::all(), &args.focus, &args.skip);
    if args.list {
        for t in &selected {
            println!("{}", t.codename);
        }
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        let client = match framework::client(args.kubeconfig.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("connecting to the cluster: {e:#}");
                return ExitCode::from(2);
            }
        };
        let opts = runner::Options {
            parallel: args.parallel.max(1),
            timeout: Duration::from_secs(args.timeout),
            image: args.image,
        };
        let outcomes = runner::run(selected, client, &opts).await;
        let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
        println!("{} passed, {} failed", outcomes.len() - failed, failed);
        if let Some(path) = &args.junit {
            if let Err(e) = junit::write(path, &outcomes) {
                eprintln!("writing {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
