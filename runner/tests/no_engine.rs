//! With no Docker engine where one is expected, connecting says so and what to do.
//! (Its own test binary: it points DOCKER_HOST at a socket that does not exist.)

#[tokio::test]
async fn a_missing_engine_is_reported_with_what_to_do() {
    // SAFETY: the only test in this binary; nothing else reads the environment.
    unsafe { std::env::set_var("DOCKER_HOST", "unix:///nonexistent/medmesh-test/docker.sock") };
    let err = runner::Engine::connect(1).await.unwrap_err();
    assert!(matches!(err, runner::RunnerError::NoEngine { .. }), "{err}");
    assert!(err.to_string().contains("start the Docker daemon"), "{err}");
}
