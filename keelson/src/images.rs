//! `keelson images`: the air-gap path for images. `import` puts image tarballs (OCI
//! archives, OCI layout directories, docker archives) into a node's containerd, where
//! the CRI finds them without a registry; `build-pause` and `build-busybox` write the
//! project's own images as OCI archives to carry to such nodes.

use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Import image tarballs (OCI archives, OCI layout directories, docker-archive
    /// tarballs) into containerd; images already there are skipped.
    Import(ImportArgs),
    /// Write the project's pause (pod sandbox) image as an OCI archive.
    BuildPause {
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the project's busybox image as an OCI archive.
    BuildBusybox {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Archives or layout directories to import.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// containerd's socket (`keelson up` runs its containerd here).
    #[arg(long, default_value = "/var/lib/keelson/containerd/containerd.sock")]
    pub containerd_socket: PathBuf,
    /// The containerd namespace; the CRI (and so the node agent) uses `k8s.io`.
    #[arg(long, default_value = keelson_containerd::CRI_NAMESPACE)]
    pub namespace: String,
}

pub async fn run(cmd: ImagesCommand) -> anyhow::Result<()> {
    match cmd {
        ImagesCommand::Import(args) => import(args).await,
        ImagesCommand::BuildPause { out } => {
            let image = keelson_containerd::image::build_pause()?;
            image.write_archive(&out)?;
            println!(
                "wrote {} ({}) to {}",
                image.name,
                image.config_digest,
                out.display()
            );
            Ok(())
        }
        ImagesCommand::BuildBusybox { out } => {
            let image = keelson_containerd::image::build_busybox()?;
            image.write_archive(&out)?;
            println!(
                "wrote {} ({}) to {}",
                image.name,
                image.config_digest,
                out.display()
            );
            Ok(())
        }
    }
}

/// Import every file; one that fails does not stop the others, but fails the command.
async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let channel = keelson_containerd::connect(&args.containerd_socket)
        .await
        .with_context(|| {
            format!(
                "connecting to containerd at {} (is it running? see --containerd-socket)",
                args.containerd_socket.display()
            )
        })?;
    let mut failed = 0;
    for file in &args.files {
        match keelson_containerd::import_archive(channel.clone(), &args.namespace, file).await {
            Ok(images) => {
                for i in images {
                    let what = if i.changed {
                        "imported"
                    } else {
                        "already present"
                    };
                    println!(
                        "{what}: {} ({}) from {}",
                        i.name,
                        i.config_digest,
                        file.display()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} files could not be imported",
            args.files.len()
        );
    }
    Ok(())
}
