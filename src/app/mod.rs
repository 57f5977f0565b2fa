//! The Leptos UI, compiled for both the server (SSR) and the browser (hydrate).

pub mod admin;
pub mod browser;
pub mod chat;
pub mod logs;
pub mod markdown;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Meta, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    StaticSegment,
};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/gemini-balance.css"/>
        <Title text="Gemini Balance"/>
        <Meta name="color-scheme" content="light dark"/>
        <Meta name="description" content="Chat with Gemini through your self-hosted key pool"/>
        <Router>
            <Routes fallback=NotFound>
                    <Route path=StaticSegment("") view=chat::ChatPage/>
                    <Route path=StaticSegment("admin") view=admin::AdminPage/>
            </Routes>
        </Router>
    }
}

/// The page for unknown paths (with a 404 status on the server).
#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="notfound">
            <h1>"Page not found"</h1>
            <a href="/">"Back to the chat"</a>
        </main>
    }
}
