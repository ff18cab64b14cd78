//! `confab`: load the configuration, prepare the database, serve until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use confab::config::Settings;
use confab::startup::Application;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("confab: {e}");
            return ExitCode::from(2);
        }
    };
    confab::startup::raise_open_files_limit();
    actix_web::rt::System::new().block_on(async move {
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("confab: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        match app.run_until_stopped(true).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("confab: server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
