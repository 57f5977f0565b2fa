//! The Leptos UI, compiled for both the server (SSR) and the browser (hydrate).

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
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
        <Router>
            <main>
                <Routes fallback=|| view! { <p class="notfound">"Page not found."</p> }>
                    <Route path=StaticSegment("") view=HomePage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Placeholder landing page until the chat UI lands.
#[component]
fn HomePage() -> impl IntoView {
    view! {
        <section class="hero">
            <h1>"Gemini Balance"</h1>
            <p>"An OpenAI-compatible gateway over a self-healing pool of Gemini API keys."</p>
            <ul class="endpoints">
                <li><code>"POST /v1/chat/completions"</code></li>
                <li><code>"GET /v1/models"</code></li>
                <li><code>"GET /healthz"</code></li>
            </ul>
        </section>
    }
}
