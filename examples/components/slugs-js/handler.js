// slugs-js: a realistic transform in JavaScript. Takes blog posts
// `{"posts": [{"title": "...", "body": "..."}]}` and returns, for each,
// a URL slug, a word count, a reading time and the five most frequent
// words (stop words left out), plus totals.
import { handler, FunctionError } from './fnhost.js';

const STOP = new Set(('a an and are as at be but by for from has have in is it its of on or ' +
  'that the this to was were will with').split(' '));

function slug(title) {
  return title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

function summarize(post) {
  const words = (post.body.toLowerCase().match(/[a-z0-9']+/g) ?? []);
  const counts = new Map();
  for (const w of words) {
    if (!STOP.has(w)) counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  const top = [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, 5)
    .map(([word, count]) => ({ word, count }));
  return {
    slug: slug(post.title),
    words: words.length,
    reading_minutes: Math.max(1, Math.round(words.length / 200)),
    top,
  };
}

export const handle = handler((event) => {
  if (!Array.isArray(event.posts)) {
    throw new FunctionError('InvalidRequest', 'posts must be an array');
  }
  const posts = event.posts.map((p, i) => {
    if (typeof p?.title !== 'string' || typeof p?.body !== 'string') {
      throw new FunctionError('InvalidRequest', `post ${i} needs a title and a body`);
    }
    return summarize(p);
  });
  console.log(`summarized ${posts.length} posts`);
  return { posts, total_words: posts.reduce((n, p) => n + p.words, 0) };
});
